"""The measured training loop: a run stopped by an error, Ctrl-C or SIGTERM keeps the epochs it completed."""

from __future__ import annotations

import signal

import pytest

from benchmarks.harness import training
from benchmarks.harness.children import StopRequested
from common.config import ExperimentConfig
from common.job import Job


def failing_in_epoch_2(real_create_trainer, error: BaseException):
    """create_trainer whose trainers raise `error` when their second epoch starts."""
    def create(*args, **kwargs):
        trainer = real_create_trainer(*args, **kwargs)
        train_epoch, calls = trainer.train_epoch, []

        def train_epoch_then_fail(*a, **k):
            calls.append(1)
            if len(calls) == 2:
                raise error
            return train_epoch(*a, **k)

        trainer.train_epoch = train_epoch_then_fail
        return trainer
    return create


@pytest.mark.parametrize("error, status, message, exit_code", [
    (RuntimeError("device lost"), "failed", "RuntimeError: device lost", 1),
    (KeyboardInterrupt(), "interrupted", "interrupted by the user (Ctrl-C)", 130),
    (StopRequested(signal.SIGTERM), "interrupted", "stopped by SIGTERM", 143),
])
@pytest.mark.parametrize("backend, seeds", [("flax", (0,)), ("flax-vmap", (0, 1))])
def test_stopped_run_keeps_completed_epochs(monkeypatch, mnist_data_dir, error, status, message, exit_code, backend,
                                            seeds):
    monkeypatch.setattr(training, "create_trainer", failing_in_epoch_2(training.create_trainer, error))
    job = Job(backends=(backend,), seeds=seeds, data_dir=str(mnist_data_dir),
              config=ExperimentConfig(epochs=3, train_limit=1000, test_limit=100))
    with pytest.raises(training.RunStopped) as stopped:
        training.train_and_evaluate(job)
    assert stopped.value.interrupted == (status == "interrupted") and stopped.value.exit_code == exit_code
    assert [run.seed for run in stopped.value.runs] == list(seeds)
    for run in stopped.value.runs:
        assert (run.status, run.error) == (status, message)
        assert [entry["epoch"] for entry in run.history] == [1]
        assert run.timing["warmup_epoch_s"] > 0 and run.timing["train_samples"] == 800
        assert run.test is None and run.versions
