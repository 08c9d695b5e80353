"""`mnist-bench calibrate`'s measurement: an A/A/B run of the default protocol on this machine.

The run trains one backend twice (`NAME#1`, `NAME#2`: an A/A pair) and a copy of it slowed on purpose (`NAME-slowed`:
after each epoch call it sleeps `slowdown` times the call's duration, so its epochs take exactly 1 + slowdown as
long), in the protocol `run` uses: a full round, then timing rounds, each process fresh and the order balanced. The
slowed backend exists only in this module's worker, which registers it before the real worker runs.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path

from backends import registry
from benchmarks.harness import parent
from benchmarks.harness.children import python_module
from common.job import Job

SLOWDOWN_ENV = "MNIST_BENCH_INJECTED_SLOWDOWN"


def slowed_name(backend: str) -> str:
    """The slowed copy's backend name."""
    return f"{backend}-slowed"


class SlowedTrainer:
    """A trainer whose every epoch call takes (1 + slowdown) times as long: it sleeps for the difference."""

    def __init__(self, trainer, slowdown: float):
        self._trainer, self._slowdown = trainer, slowdown

    def train_epoch(self, *args, **kwargs):
        """The wrapped trainer's epoch, then a sleep of `slowdown` times its duration."""
        start = time.perf_counter()
        logs = self._trainer.train_epoch(*args, **kwargs)
        time.sleep(self._slowdown * (time.perf_counter() - start))
        return logs

    def __getattr__(self, name):
        return getattr(self._trainer, name)


def create_slowed_trainer(config, initial_weights, placement, *, build, backend, wrapped: str, slowdown: float,
                          **options):
    """The `wrapped` backend's trainer (its own `options`), slowed by `slowdown`."""
    factory = registry.resolve(registry.backend_spec(wrapped).factory)
    return SlowedTrainer(factory(config, initial_weights, placement, build=build, backend=backend, **options), slowdown)


def register_slowed(backend: str, slowdown: float) -> str:
    """Add `backend`'s slowed copy to this process' registry; its name."""
    spec = registry.backend_spec(backend)
    name = slowed_name(backend)
    registry.unregister_backend(name)  # a second calibration in one process replaces the first one's copy
    registry.register_backend(dataclasses.replace(
        spec, name=name, factory=f"{__name__}:create_slowed_trainer",
        description=f"{backend}, slowed by {slowdown:.0%} on purpose",
        options=(*spec.options, ("wrapped", backend), ("slowdown", slowdown))))
    return name


def worker(argv: list[str]) -> int:
    """The run's worker, with the slowed backend registered first (which one and how slow: the environment)."""
    backend, slowdown = os.environ[SLOWDOWN_ENV].split(":")
    register_slowed(backend, float(slowdown))
    from benchmarks.harness import worker as real_worker

    return real_worker.main(argv)


def run_aab(backend: str, slowdown: float, job: Job, out_dir: Path, quiet: bool = True):
    """Train the A/A/B run with `job`'s settings (its backends replaced); (results, run folder)."""
    os.environ[SLOWDOWN_ENV] = f"{backend}:{slowdown}"
    slowed = register_slowed(backend, slowdown)
    job = job.replace(backends=(f"{backend}#1", f"{backend}#2", slowed))
    try:
        return parent.run_benchmark(job, out_dir, quiet=quiet, measure_floor=False,
                                    worker_command=python_module(__name__) + ("--worker",))
    finally:
        registry.unregister_backend(slowed)  # the slowed copy is this run's only: `--backend all` never sees it


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        sys.exit(worker(sys.argv[2:]))
    sys.exit("usage: python -m benchmarks.harness.aab --worker JOB.json RESULT.json")
