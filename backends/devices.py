"""A process' framework settings, applied once where the process starts, before any framework loads.

Two frameworks never share a process here, but a framework left to its defaults would still grab a
whole GPU: TensorFlow maps all GPU memory at start-up and JAX preallocates 75% of it. Most of these
settings are environment variables that a framework reads once, at its first import, so they are
set by `configure_process`, called first thing by every entry point that trains or measures (the
worker, the roofline probe, the test and benchmark probes; `registry.prepare_process` picks the
frameworks of a backend). After that, backend modules import their framework at the top like any
other module.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

from backends.base import BackendError
from common.job import DEVICES, PRECISIONS

KERAS_BACKENDS = ("tensorflow", "jax")
# Every variable framework_environment may set: what a worker records as the settings it ran with.
SETTING_VARIABLES = ("XLA_FLAGS", "XLA_PYTHON_CLIENT_PREALLOCATE", "JAX_PLATFORMS", "JAX_DEFAULT_MATMUL_PRECISION",
                     "TF_CPP_MIN_LOG_LEVEL", "NVIDIA_TF32_OVERRIDE", "KERAS_BACKEND")
PRECISION_VARIABLES = ("JAX_DEFAULT_MATMUL_PRECISION", "NVIDIA_TF32_OVERRIDE")
# XLA's host platform shows this many CPU devices: how JAX gets N "devices" on one CPU.
HOST_DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"


def check_device(device: str) -> None:
    """Reject anything but the known device kinds, listing them."""
    if device not in DEVICES:
        raise BackendError(f"unknown device {device!r}; valid devices: {', '.join(DEVICES)}")


def framework_environment(frameworks: Iterable[str], device: str, keras_backend: str | None = None,
                          precision: str = "highest", devices: int = 1) -> dict:
    """The environment variables a process running `frameworks` on `devices` x `device` needs, before their import."""
    check_device(device)
    frameworks = set(frameworks)
    environment = {}
    if "jax" in frameworks:
        # Allocate GPU memory on demand instead of grabbing 75% of the card at start-up.
        environment["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
        if device == "cpu":
            # Skip probing for CUDA/TPU plugins: faster start-up, and no GPU memory touched.
            environment["JAX_PLATFORMS"] = "cpu"
            if devices > 1:
                environment["XLA_FLAGS"] = with_host_device_count(os.environ.get("XLA_FLAGS", ""), devices)
        if precision == "highest":
            # jax_default_matmul_precision, read at import: full float32 dots instead of TF32 on GPUs.
            environment["JAX_DEFAULT_MATMUL_PRECISION"] = "highest"
    if "tensorflow" in frameworks:
        # Keep TensorFlow's C++ start-up chatter out of the progress display.
        environment["TF_CPP_MIN_LOG_LEVEL"] = "2"
        if precision == "highest":
            # Read by NVIDIA's libraries under TensorFlow; configure_tensorflow also turns TF32 off by API.
            environment["NVIDIA_TF32_OVERRIDE"] = "0"
    if "keras" in frameworks:
        if keras_backend not in KERAS_BACKENDS:
            raise BackendError(f"unknown Keras backend {keras_backend!r}; valid: {', '.join(KERAS_BACKENDS)}")
        environment["KERAS_BACKEND"] = keras_backend
    return environment


def with_host_device_count(xla_flags: str, count: int) -> str:
    """`xla_flags` with XLA's host device count set to `count` (any earlier value of that flag dropped)."""
    kept = [flag for flag in xla_flags.split() if not flag.startswith(HOST_DEVICE_COUNT_FLAG)]
    return " ".join([*kept, f"{HOST_DEVICE_COUNT_FLAG}={count}"])


def configure_process(frameworks: Iterable[str], device: str, keras_backend: str | None = None,
                      precision: str = "highest", devices: int = 1) -> None:
    """Set this process' framework environment; refuse if Keras already runs on another backend here."""
    check_precision(precision)
    environment = framework_environment(frameworks, device, keras_backend, precision, devices)
    if "KERAS_BACKEND" in environment and "keras" in sys.modules:
        check_keras_backend(environment["KERAS_BACKEND"])
    if "JAX_PLATFORMS" in environment and "jax" in sys.modules and os.environ.get("JAX_PLATFORMS") != "cpu":
        # Too late to pin: JAX has read its platforms. Not wrong (devices are chosen explicitly),
        # only slower to start; keep the environment truthful about what was in force.
        environment.pop("JAX_PLATFORMS")
    if precision == "default":
        # Each framework's own default, even where the caller's environment pinned one.
        for name in PRECISION_VARIABLES:
            os.environ.pop(name, None)
    os.environ.update(environment)


def current_settings() -> dict[str, str]:
    """The framework settings in force in this process, as the frameworks will read them."""
    return {name: os.environ[name] for name in SETTING_VARIABLES if name in os.environ}


def check_precision(precision: str) -> None:
    """Reject anything but the known precision settings, listing them."""
    if precision not in PRECISIONS:
        raise BackendError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")


def check_keras_backend(keras_backend: str) -> None:
    """Refuse when Keras is loaded in this process on a backend other than `keras_backend`."""
    import keras

    if keras.backend.backend() != keras_backend:
        raise BackendError(f"Keras is already loaded on {keras.backend.backend()!r} in this process, so it "
                           f"cannot run on {keras_backend!r}; run each backend in its own process")


def jax_device(device: str):
    """The first JAX device of the asked kind."""
    return jax_devices(device, 1)[0]


def jax_devices(device: str, count: int) -> list:
    """The first `count` JAX devices of the asked kind; fewer than that is a BackendError."""
    check_device(device)
    import jax

    try:
        found = jax.devices(device)
    except RuntimeError:
        raise BackendError(f"--device {device}: JAX sees no {device.upper()} (it sees {jax.devices()}); "
                           "install the GPU extra (README 'GPU') or use --device cpu") from None
    if len(found) < count:
        raise BackendError(f"--devices {count}: JAX sees only {len(found)} {device.upper()} device(s); "
                           f"use --devices {len(found)} or fewer")
    return found[:count]


def describe_jax_devices(devices) -> str:
    """JAX devices in words, as results record them: 'cpu:0 (cpu), cpu:1 (cpu)'."""
    return ", ".join(f"{device.platform}:{device.id} ({device.device_kind})" for device in devices)


def jax_device_memory(device) -> dict | None:
    """Peak and current bytes of a JAX device's allocator; None on CPU, where JAX keeps no such counters."""
    stats = device.memory_stats() if device.platform != "cpu" else None
    if not stats:
        return None
    return {"peak_bytes": stats.get("peak_bytes_in_use"), "in_use_bytes": stats.get("bytes_in_use"),
            "allocator": {"XLA_PYTHON_CLIENT_PREALLOCATE": os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE")}}


def tensorflow_device_memory(device: str) -> dict | None:
    """Peak and current bytes of TensorFlow's GPU allocator; None for CPU runs."""
    if not device.startswith("/GPU"):
        return None
    import tensorflow as tf

    info = tf.config.experimental.get_memory_info(device.lstrip("/"))
    return {"peak_bytes": info["peak"], "in_use_bytes": info["current"], "allocator": {"memory_growth": True}}


def configure_tensorflow(device: str, devices: int = 1) -> list[str]:
    """Hide GPUs from TensorFlow for CPU runs (splitting the CPU into `devices` logical devices), or turn on
    memory growth for GPU runs; returns the `devices` TensorFlow device names to train on."""
    check_device(device)
    import tensorflow as tf

    # TF32 off when the process was configured for full float32 (on by default on Ampere and newer).
    tf.config.experimental.enable_tensor_float_32_execution(os.environ.get("NVIDIA_TF32_OVERRIDE") != "0")
    gpus = tf.config.list_physical_devices("GPU")
    if device == "cpu":
        tf.config.set_visible_devices([], "GPU")
        if devices > 1:
            # TensorFlow's way to get N CPU devices (as its own multi-device tests do); only before it starts.
            tf.config.set_logical_device_configuration(
                tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * devices)
        return [f"/CPU:{index}" for index in range(devices)]
    if not gpus:
        raise BackendError("--device gpu: TensorFlow sees no GPU; install the GPU extra (README 'GPU') "
                           "or use --device cpu")
    if len(gpus) < devices:
        raise BackendError(f"--devices {devices}: TensorFlow sees only {len(gpus)} GPU(s); use --devices "
                           f"{len(gpus)} or fewer")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    return [f"/GPU:{index}" for index in range(devices)]
