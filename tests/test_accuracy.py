"""Every backend learns real MNIST: 1 epoch >= 95% in CI; the full 10-epoch run >= 97.5% and the convnet's
15 epochs >= 98.8% (slow)."""

from __future__ import annotations

import pytest

from benchmarks.cli import main
from common.results import load_results
from conftest import real_mnist_dir, requires_real_mnist

pytestmark = requires_real_mnist


def run_all_backends(out, epochs: int, seeds: str = "0", *flags: str):
    assert main(["run", "--rounds", "1", "--timing-rounds", "0", "--epochs", str(epochs), "--seeds", seeds, "--data-dir", str(real_mnist_dir()),
                 "--out", str(out), "--quiet", *flags]) == 0
    runs = {}
    for run in load_results(out).runs:
        runs.setdefault(run.backend, []).append(run)
    return runs


def test_one_epoch_reaches_95_percent(tmp_path):
    runs = run_all_backends(tmp_path / "one-epoch", epochs=1)
    assert set(runs) == {"keras", "flax", "keras-jax"}
    for name, (run,) in runs.items():
        assert run.test["accuracy"] >= 0.95, (name, run.test)
        assert run.history[0]["val_accuracy"] >= 0.95, (name, run.history)


@pytest.mark.slow
def test_ten_epochs_reach_97_5_percent(tmp_path):
    # A single run's final test accuracy moves by +-0.3-0.5 points with the seed (the last epochs
    # oscillate; measured seeds 0-3: keras-jax 97.26/98.01/98.02/97.26, flax 97.86/97.75/97.47/97.90),
    # so the 97.5% bar is held by the mean of seeds 0-2, and every single run must clear 97%.
    runs = run_all_backends(tmp_path / "ten-epochs", epochs=10, seeds="0,1,2")
    for name, backend_runs in runs.items():
        accuracies = [run.test["accuracy"] for run in backend_runs]
        assert sum(accuracies) / len(accuracies) >= 0.975, (name, accuracies)
        assert min(accuracies) >= 0.97, (name, accuracies)
        assert all(run.timing["time_to_target_s"] is not None for run in backend_runs), name


@pytest.mark.slow
def test_convnet_reaches_98_8_percent_on_every_backend(tmp_path):
    # Keras' example reports ~99% after 15 epochs; the bar is the mean over seeds 0-2 at the example's
    # defaults (dropout 0.5 on). On the 2-core CI CPU this takes hours: XLA's CPU convolutions make the JAX
    # rows 4x slower per step than Keras on TensorFlow, and the fused ones 20x (docs/models.md).
    runs = run_all_backends(tmp_path / "cnn", 15, "0,1,2", "--model", "cnn", "--backend", "all")
    assert len(runs) == 8
    for name, backend_runs in runs.items():
        accuracies = [run.test["accuracy"] for run in backend_runs]
        assert sum(accuracies) / len(accuracies) >= 0.988, (name, accuracies)
