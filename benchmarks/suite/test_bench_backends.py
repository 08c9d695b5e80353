"""Per-backend benchmarks: train step by batch size, a training epoch, and test-set inference."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.suite.conftest import framework_versions
from common.config import ExperimentConfig
from common.data import epoch_batches
from common.workloads import forward_flops_per_sample, training_flops_per_sample

CONFIG = ExperimentConfig()  # the suite trains the MLP
SAMPLES_PER_ROUND = 3200  # each timed round trains on about this many samples, whatever the batch size


def record(benchmark, trainer, backend, samples_per_call, flops_per_sample, **extra):
    """extra_info from the measured mean time of one call (filled in after the run)."""
    seconds = benchmark.stats.stats.mean
    benchmark.extra_info.update(
        backend=backend, samples_per_s=samples_per_call / seconds,
        gflops_per_s=flops_per_sample * samples_per_call / seconds / 1e9,
        flops_per_sample=flops_per_sample, **framework_versions(trainer), **extra)


def test_train_step(benchmark, trainers, splits, backend, batch_size, rounds):
    """Steady-state train steps at one batch size; each call runs several steps, the device synced at the end."""
    trainer = trainers(backend, batch_size)
    steps = max(4, SAMPLES_PER_ROUND // batch_size)
    batches = epoch_batches(len(splits.x_train), batch_size, seed=0, epoch=0)[:steps]
    loss_before = trainer.seed_model(0).evaluate(splits.x_val, splits.y_val)[0]
    logs = []

    def run():
        # train_epoch returns only after the last step's loss is on the host: synchronized.
        logs.extend(trainer.train_epoch(splits.x_train, splits.y_train, [batches]))

    benchmark.group = f"train step, batch {batch_size}"
    benchmark.pedantic(run, rounds=rounds, warmup_rounds=2, iterations=1)
    loss_after = trainer.seed_model(0).evaluate(splits.x_val, splits.y_val)[0]
    assert np.isfinite(loss_after) and loss_after < loss_before  # what was timed really trained
    steps_timed = len(batches)
    record(benchmark, trainer, backend, steps_timed * batch_size, training_flops_per_sample(CONFIG),
           batch_size=batch_size, steps_per_call=steps_timed,
           step_ms=benchmark.stats.stats.mean / steps_timed * 1e3)


def test_train_epoch(benchmark, trainers, splits, backend, quick):
    """One epoch of the default schedule at batch 32 (in quick mode, a tenth of one)."""
    trainer = trainers(backend, 32)
    samples = len(splits.x_train) // (10 if quick else 1)
    batches = epoch_batches(samples, 32, seed=0, epoch=1)
    logs = []
    benchmark.group = "train epoch, batch 32"
    benchmark.pedantic(lambda: logs.extend(trainer.train_epoch(splits.x_train, splits.y_train, [batches])),
                       rounds=2 if quick else 3, warmup_rounds=1, iterations=1)
    assert all(np.isfinite(log.loss) for log in logs)
    assert logs[-1].loss < logs[0].losses[0]
    record(benchmark, trainer, backend, samples, training_flops_per_sample(CONFIG), batch_size=32,
           epoch_samples=samples)


def test_inference(benchmark, trainers, splits, backend, rounds):
    """Softmax probabilities for the 10,000 test images."""
    trainer = trainers(backend, 32)
    outputs = []
    benchmark.group = "inference, 10,000 test images"
    model = trainer.seed_model(0)
    benchmark.pedantic(lambda: outputs.append(model.predict(splits.x_test)), rounds=rounds, warmup_rounds=2,
                       iterations=1)
    probabilities = outputs[-1]
    assert probabilities.shape == (len(splits.x_test), 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    record(benchmark, trainer, backend, len(splits.x_test), forward_flops_per_sample(CONFIG))


@pytest.mark.parametrize("seeds", [1, 8])
def test_train_epoch_seeds_vmapped(benchmark, request, trainers, splits, quick, seeds):
    """K seeds trained by one vmapped, fused program: the cost of K seeds against one."""
    if "flax" not in request.config.getoption("--bench-backend").split(","):
        pytest.skip("runs with the flax backend (mnist-bench suite: in the flax process)")
    trainer = trainers("flax-vmap", 32, tuple(range(seeds)))
    samples = len(splits.x_train) // (10 if quick else 1)
    batches = [epoch_batches(samples, 32, seed=seed, epoch=1) for seed in range(seeds)]
    logs = []
    benchmark.group = "train epoch, batch 32, K seeds vmapped"
    benchmark.pedantic(lambda: logs.append(trainer.train_epoch(splits.x_train, splits.y_train, batches)),
                       rounds=2 if quick else 3, warmup_rounds=1, iterations=1)
    assert all(np.isfinite(log.loss) for log in logs[-1]) and logs[-1][0].loss < logs[0][0].losses[0]
    seconds = benchmark.stats.stats.mean
    benchmark.extra_info.update(
        backend="flax-vmap", seeds=seeds, per_seed_s=seconds / seeds, samples_per_s=seeds * samples / seconds,
        gflops_per_s=training_flops_per_sample(CONFIG) * samples * seeds / seconds / 1e9,
        epoch_samples=samples, **framework_versions(trainer))
