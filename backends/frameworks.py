"""One table per framework: its process settings, device probe, profiler, precision in force and versions.

A process' framework settings are applied once where the process starts, before any framework loads. Two
frameworks never share a process here, but a framework left to its defaults would still grab a whole GPU:
TensorFlow maps all GPU memory at start-up and JAX preallocates 75% of it. Most of these settings are
environment variables that a framework reads once, at its first import, so `configure_process` is called
first thing by every entry point that trains or measures (the worker, verify's probes, the roofline
probe, the test and benchmark probes; `registry.prepare_process` picks a backend's frameworks). It takes
the job, so no setting (the precision above all) can be dropped on the way. After that, backend modules
import their framework at the top like any other module.

A new framework is one entry here, its backend module and its registry entry.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from backends.base import BackendError

if TYPE_CHECKING:
    from common.job import Job

KERAS_BACKENDS = ("tensorflow", "jax")
# Every variable an environment below may set: what a worker records as the settings it ran with.
SETTING_VARIABLES = ("XLA_FLAGS", "XLA_PYTHON_CLIENT_PREALLOCATE", "JAX_PLATFORMS", "JAX_DEFAULT_MATMUL_PRECISION",
                     "TF_CPP_MIN_LOG_LEVEL", "NVIDIA_TF32_OVERRIDE", "TF_FORCE_GPU_ALLOW_GROWTH", "KERAS_BACKEND",
                     "JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS")
PRECISION_VARIABLES = ("JAX_DEFAULT_MATMUL_PRECISION", "NVIDIA_TF32_OVERRIDE")
# XLA's host platform shows this many CPU devices: how JAX gets N "devices" on one CPU.
HOST_DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"


@dataclasses.dataclass(frozen=True)
class Framework:
    """What mnist-bench knows about one framework; the callables import it only when called."""

    name: str
    # Modules whose __version__ every run records.
    version_modules: tuple[str, ...]
    # (job, keras_backend) -> the environment variables it needs before its first import.
    environment: Callable[[Job, str | None], dict] = lambda job, keras_backend: {}
    # Python code printing the devices it sees, run in a fresh process (`info`, the GPU check).
    device_probe: str | None = None
    # start(directory) and stop() of its own profiler, writing TensorBoard's XProf format.
    start_trace: Callable[[Path], None] | None = None
    stop_trace: Callable[[], None] | None = None
    # () -> its float32 matmul precision in force in this process, as the framework itself reports it.
    precision_in_force: Callable[[], str] | None = None
    # What installs it, for the one-line error when it is missing.
    install_hint: str = "a base dependency: reinstall the project (docs/install.md)"


def _jax_environment(job: Job, keras_backend: str | None) -> dict:
    # Allocate GPU memory on demand instead of grabbing 75% of the card at start-up.
    environment = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    if job.device == "cpu":
        # Skip probing for CUDA/TPU plugins: faster start-up, and no GPU memory touched.
        environment["JAX_PLATFORMS"] = "cpu"
    if job.precision == "highest":
        # jax_default_matmul_precision, read at import: full float32 dots instead of TF32 on GPUs.
        environment["JAX_DEFAULT_MATMUL_PRECISION"] = "highest"
    if job.compile_cache:
        environment["JAX_COMPILATION_CACHE_DIR"] = str(Path(job.compile_cache).resolve())
        # JAX caches only programs that took a second or more to compile by default: none of mnist-bench's would be.
        environment["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    return environment


def _tensorflow_environment(job: Job, keras_backend: str | None) -> dict:
    # Keep TensorFlow's C++ start-up chatter out of the progress display.
    environment = {"TF_CPP_MIN_LOG_LEVEL": "2"}
    if job.precision == "highest":
        # Read by NVIDIA's libraries under TensorFlow; configure_tensorflow also turns TF32 off by API.
        environment["NVIDIA_TF32_OVERRIDE"] = "0"
    return environment


def _keras_environment(job: Job, keras_backend: str | None) -> dict:
    if keras_backend not in KERAS_BACKENDS:
        raise BackendError(f"unknown Keras backend {keras_backend!r}; valid: {', '.join(KERAS_BACKENDS)}")
    return {"KERAS_BACKEND": keras_backend}


def _start_jax_trace(directory: Path) -> None:
    import jax

    jax.profiler.start_trace(str(directory), create_perfetto_trace=True)


def _stop_jax_trace() -> None:
    import jax

    jax.profiler.stop_trace()


def _start_tensorflow_trace(directory: Path) -> None:
    import tensorflow as tf

    tf.profiler.experimental.start(str(directory))


def _stop_tensorflow_trace() -> None:
    import tensorflow as tf

    tf.profiler.experimental.stop()


def _jax_precision() -> str:
    import jax

    return str(jax.config.jax_default_matmul_precision or "default")


def _tensorflow_precision() -> str:
    import tensorflow as tf

    return "tf32 allowed" if tf.config.experimental.tensor_float_32_execution_enabled() else "highest (tf32 off)"


FRAMEWORKS = {framework.name: framework for framework in (
    Framework("jax", ("jax", "jaxlib"), _jax_environment,
              device_probe="import jax; "
                           "print(', '.join(f'{d.platform}:{d.id} ({d.device_kind})' for d in jax.devices()))",
              start_trace=_start_jax_trace, stop_trace=_stop_jax_trace, precision_in_force=_jax_precision),
    Framework("tensorflow", ("tensorflow",), _tensorflow_environment,
              device_probe="import os; os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2'); import tensorflow as tf; "
                           "print(', '.join(d.name for d in tf.config.list_logical_devices()))",
              start_trace=_start_tensorflow_trace, stop_trace=_stop_tensorflow_trace,
              precision_in_force=_tensorflow_precision,
              install_hint="the `cpu` extra (`gpu` on NVIDIA machines) installs it (docs/install.md)"),
    Framework("keras", ("keras",), _keras_environment),
    Framework("flax", ("flax",)),
    Framework("optax", ("optax",)),
)}
# The frameworks a device probe can ask, for `info` and the GPU check.
DEVICE_PROBES = {name: framework.device_probe for name, framework in FRAMEWORKS.items() if framework.device_probe}


def frameworks_of(names: Iterable[str]) -> list[Framework]:
    """The table's entries for `names`; an unknown name is a BackendError listing the known ones."""
    unknown = [name for name in names if name not in FRAMEWORKS]
    if unknown:
        raise BackendError(f"unknown framework(s) {unknown}; known: {', '.join(FRAMEWORKS)}")
    return [FRAMEWORKS[name] for name in names]


def missing_frameworks(names: Iterable[str]) -> list[Framework]:
    """Those of frameworks `names` that this interpreter cannot import (looked up, not imported)."""
    return [framework for framework in frameworks_of(names) if not _importable(framework.version_modules[0])]


def _importable(module: str) -> bool:
    if module in sys.modules:  # None there is Python's way of blocking an import
        return sys.modules[module] is not None
    return importlib.util.find_spec(module) is not None


def framework_environment(names: Iterable[str], job: Job, keras_backend: str | None = None,
                          xla_route: str = "") -> dict:
    """The environment variables a process running frameworks `names` for `job` needs, before their import.

    `xla_route`: XLA flags that choose the kernels of a JAX worker's ops (a backend's own route, or the job's
    --xla-flags), after any the caller's environment sets, so that they win.
    """
    names = tuple(names)
    environment = {}
    for framework in frameworks_of(names):
        environment.update(framework.environment(job, keras_backend))
    if "jax" in names:
        flags = " ".join(part for part in (os.environ.get("XLA_FLAGS", ""), xla_route) if part)
        if job.device == "cpu" and job.devices > 1:
            flags = with_host_device_count(flags, job.devices)
        if flags:
            environment["XLA_FLAGS"] = flags
    # Each worker runs one framework family; should a library load the other one there after all, it must not
    # take the GPU from under the framework that trains: JAX stays on the CPU in a TensorFlow worker, and
    # TensorFlow maps GPU memory only as it needs it in a JAX worker (it cannot be hidden by a variable alone).
    if "tensorflow" in names and "jax" not in names:
        environment["JAX_PLATFORMS"] = "cpu"
    if "jax" in names and "tensorflow" not in names:
        environment["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
    return environment


def with_host_device_count(xla_flags: str, count: int) -> str:
    """`xla_flags` with XLA's host device count set to `count` (any earlier value of that flag dropped)."""
    kept = [flag for flag in xla_flags.split() if not flag.startswith(HOST_DEVICE_COUNT_FLAG)]
    return " ".join([*kept, f"{HOST_DEVICE_COUNT_FLAG}={count}"])


def configure_process(names: Iterable[str], job: Job, keras_backend: str | None = None, xla_route: str = "") -> None:
    """Set this process' environment for frameworks `names` running `job` (XLA flags `xla_route` for JAX);
    refuse if Keras already runs on another backend here."""
    names = tuple(names)
    environment = framework_environment(names, job, keras_backend, xla_route)
    if "KERAS_BACKEND" in environment and "keras" in sys.modules:
        from backends.devices import check_keras_backend

        check_keras_backend(environment["KERAS_BACKEND"])
    if "JAX_PLATFORMS" in environment and "jax" in sys.modules and os.environ.get("JAX_PLATFORMS") != "cpu":
        # Too late to pin: JAX has read its platforms. Not wrong (devices are chosen explicitly),
        # only slower to start; keep the environment truthful about what was in force.
        environment.pop("JAX_PLATFORMS")
    if job.precision == "default":
        # Each framework's own default, even where the caller's environment pinned one.
        for name in PRECISION_VARIABLES:
            os.environ.pop(name, None)
    os.environ.update(environment)


def current_settings() -> dict[str, str]:
    """The framework settings in force in this process, as the frameworks will read them."""
    return {name: os.environ[name] for name in SETTING_VARIABLES if name in os.environ}


def precision_in_force(names: Iterable[str]) -> dict[str, str]:
    """Each framework's own word on its float32 matmul precision in this process (imports them)."""
    return {framework.name: framework.precision_in_force() for framework in frameworks_of(names)
            if framework.precision_in_force is not None}


def framework_versions(names: Iterable[str]) -> dict[str, str]:
    """Versions of the frameworks `names` and their companion modules (jaxlib beside jax), as imported here."""
    return {module: importlib.import_module(module).__version__
            for framework in frameworks_of(names) for module in framework.version_modules}


def profiling_framework(names: Iterable[str]) -> Framework:
    """The framework whose profiler traces a backend of frameworks `names`: the one with a profiler (TensorFlow
    under Keras on TensorFlow, JAX under Flax or Keras on JAX); none is a BackendError, never a guess."""
    traced = [framework for framework in frameworks_of(names) if framework.start_trace is not None]
    if len(traced) != 1:
        raise BackendError(f"frameworks {list(names)}: expected exactly one with a profiler, found "
                           f"{[framework.name for framework in traced]}")
    return traced[0]
