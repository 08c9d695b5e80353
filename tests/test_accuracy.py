"""Every backend learns real MNIST: 1 epoch >= 95% in CI; the full 10-epoch run >= 97.5% (slow)."""

from __future__ import annotations

import pytest

from benchmarks.cli import main
from common.results import load_results
from conftest import real_mnist_dir, requires_real_mnist

pytestmark = requires_real_mnist


def run_all_backends(out, epochs: int):
    assert main(["run", "--epochs", str(epochs), "--data-dir", str(real_mnist_dir()), "--out", str(out),
                 "--quiet"]) == 0
    return {run.backend: run for run in load_results(out).runs}


def test_one_epoch_reaches_95_percent(tmp_path):
    runs = run_all_backends(tmp_path / "one-epoch", epochs=1)
    assert set(runs) == {"keras", "flax", "keras-jax"}
    for name, run in runs.items():
        assert run.test["accuracy"] >= 0.95, (name, run.test)
        assert run.history[0]["val_accuracy"] >= 0.95, (name, run.history)


@pytest.mark.slow
def test_ten_epochs_reach_97_5_percent(tmp_path):
    runs = run_all_backends(tmp_path / "ten-epochs", epochs=10)
    for name, run in runs.items():
        assert run.test["accuracy"] >= 0.975, (name, run.test)
        assert run.timing["time_to_target_s"] is not None, name
