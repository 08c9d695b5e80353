"""What a result depends on besides the code: versions, machine, threads, flags, commit."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path

from benchmarks.measure.stack import stack_report

PACKAGES = ("numpy", "tensorflow", "tensorflow-cpu", "keras", "jax", "jaxlib", "flax", "optax", "matplotlib",
            "pytest-benchmark")
# Settings that change how fast (or where) the frameworks run.
RELEVANT_ENV = ("XLA_FLAGS", "TF_XLA_FLAGS", "TF_ENABLE_ONEDNN_OPTS", "TF_NUM_INTRAOP_THREADS",
                "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "JAX_PLATFORMS", "JAX_ENABLE_X64",
                "XLA_PYTHON_CLIENT_PREALLOCATE", "XLA_PYTHON_CLIENT_MEM_FRACTION", "CUDA_VISIBLE_DEVICES",
                "KERAS_BACKEND")


def framework_devices(framework: str) -> str:
    """The devices `framework` sees, asked in a fresh child process (so neither framework grabs the other's devices
    or threads), or why it could not be asked."""
    from backends.frameworks import DEVICE_PROBES

    try:
        probe = subprocess.run([sys.executable, "-c", DEVICE_PROBES[framework]], capture_output=True, text=True,
                               timeout=120)
    except subprocess.TimeoutExpired:
        return "(timed out)"
    if probe.returncode:
        lines = probe.stderr.strip().splitlines()
        return f"(unavailable: {lines[-1] if lines else probe.returncode})"
    return probe.stdout.strip()


def cpu_name() -> str:
    """The CPU model, from /proc/cpuinfo where there is one."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_versions() -> dict[str, str | None]:
    """Installed versions, read from package metadata (no framework is imported)."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> str | None:
    """The project's commit, with '+dirty' when the work tree has changes; None outside a checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask), else all of the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def blas_forcing() -> dict[str, str]:
    """What this process' environment forces on OpenBLAS ({variable: value}; empty: OpenBLAS picks the CPU's kernel)."""
    from benchmarks.measure.roofline import blas_forcing as forced

    return forced()


def collect_environment(data_source: str | None = None, data_canonical: bool | None = None) -> dict:
    """One flat record of the machine and software, stored in every results.json."""
    cores = usable_cores()
    return {
        "hostname": socket.gethostname(),
        "machine": f"{cpu_name()} x{cores}",
        "cpu": cpu_name(),
        "cpu_cores": os.cpu_count(),
        "usable_cores": cores,
        "memory_gib": _memory_gib(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "packages": package_versions(),
        "stack": stack_report(),
        "env": {name: os.environ[name] for name in RELEVANT_ENV if name in os.environ},
        # Set here, these pin OpenBLAS to an older kernel family in every process but the floor's measurement.
        "blas_forced": blas_forcing(),
        "git_commit": git_commit(),
        "command": invoking_command(),
        "data_source": data_source,
        "data_canonical": data_canonical,
    }


def invoking_command() -> str:
    """The command line that started this process, as a user would type it again (`mnist-bench run --rounds 3`)."""
    import shlex

    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    if program in ("cli.py", "__main__.py"):
        program = "python -m benchmarks.cli"
    return " ".join([program, shlex.join(sys.argv[1:])]).strip()


def _memory_gib() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30, 1)
    except (ValueError, OSError, AttributeError):
        return None
