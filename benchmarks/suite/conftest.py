"""pytest-benchmark suite options and shared fixtures (quick mode, backend choice, MNIST splits)."""

from __future__ import annotations

import os
import sys

import pytest

from backends.registry import BACKENDS
from common.job import PRECISIONS, Job

QUICK_ENV = "MNIST_BENCH_QUICK"
FULL_BATCH_SIZES = (32, 128, 512, 2048)
QUICK_BATCH_SIZES = (32, 512)


def pytest_addoption(parser):
    group = parser.getgroup("mnist-bench")
    group.addoption("--bench-backend", default=",".join(BACKENDS),
                    help="comma-separated backends to benchmark in this process (mnist-bench suite runs one per "
                         "process); default: %(default)s")
    group.addoption("--bench-precision", default=Job.precision, choices=PRECISIONS,
                    help="float32 matmul precision: highest (pinned, no TF32) or each framework's default")
    group.addoption("--bench-quick", action="store_true", default=os.environ.get(QUICK_ENV, "") not in ("", "0"),
                    help=f"quick mode: fewer batch sizes and rounds, a 1/10 epoch (also: {QUICK_ENV}=1)")


def pytest_generate_tests(metafunc):
    quick = metafunc.config.getoption("--bench-quick")
    if "backend" in metafunc.fixturenames:
        names = [n.strip() for n in metafunc.config.getoption("--bench-backend").split(",") if n.strip()]
        metafunc.parametrize("backend", names)
    if "batch_size" in metafunc.fixturenames:
        metafunc.parametrize("batch_size", QUICK_BATCH_SIZES if quick else FULL_BATCH_SIZES)


@pytest.fixture(scope="session")
def quick(request) -> bool:
    """Whether the suite runs in quick mode."""
    return request.config.getoption("--bench-quick")


@pytest.fixture(scope="session")
def rounds(quick) -> int:
    """Timed rounds per benchmark (warm-up rounds come on top)."""
    return 3 if quick else 10


@pytest.fixture(scope="session")
def splits():
    """Real MNIST splits with the default config (MNIST_BENCH_DATA, caches or download)."""
    from common.config import ExperimentConfig
    from common.data import make_splits
    from common.mnist import load_mnist

    return make_splits(load_mnist(progress=False), ExperimentConfig())


@pytest.fixture(scope="session")
def precision(request) -> str:
    """The matmul precision every trainer of this session runs with."""
    return request.config.getoption("--bench-precision")


@pytest.fixture(scope="session")
def trainers(precision):
    """One trainer per (backend, batch size), built lazily; Keras backends that cannot share the process skip."""
    from backends.base import BackendError
    from backends.registry import create_trainer, prepare_process
    from common.config import ExperimentConfig
    from common.job import Job
    from common.workloads import initial_weights

    cache = {}

    def get(backend: str, batch_size: int = 32, seeds: tuple[int, ...] = (0,)):
        if (backend, batch_size, seeds) not in cache:
            config = ExperimentConfig(batch_size=batch_size)
            job = Job(backends=(backend,), config=config, seeds=seeds, precision=precision)
            try:
                prepare_process(job)
                cache[backend, batch_size, seeds] = create_trainer(job, {seed: initial_weights(config, seed)
                                                                         for seed in seeds})
            except BackendError as error:
                pytest.skip(f"{error}; `mnist-bench suite` runs each backend in its own process")
        return cache[backend, batch_size, seeds]

    return get


def framework_versions(trainer) -> dict:
    """Versions, device and framework settings to put in every benchmark's extra_info."""
    from backends.frameworks import current_settings

    from benchmarks.harness.costs import peak_rss_mib

    # Peak RSS of this pytest process so far: one backend's own under `mnist-bench suite` (a process each).
    return {"device": trainer.device_name(), "python": sys.version.split()[0], **trainer.versions(),
            "settings": current_settings(), "peak_rss_mib": peak_rss_mib()}
