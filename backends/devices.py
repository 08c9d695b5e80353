"""The devices each framework trains on: finding them, naming them, their allocators' memory figures.

The process-wide settings that must come before a framework's import are in backends/frameworks.py.
"""

from __future__ import annotations

import os

from backends.base import BackendError
from common.job import DEVICES


def check_device(device: str) -> None:
    """Reject anything but the known device kinds, listing them."""
    if device not in DEVICES:
        raise BackendError(f"unknown device {device!r}; valid devices: {', '.join(DEVICES)}")


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
                           "install the GPU extra (docs/gpu.md) or use --device cpu") from None
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


def configure_tensorflow(device: str, devices: int) -> list[str]:
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
        raise BackendError("--device gpu: TensorFlow sees no GPU; install the GPU extra (docs/gpu.md) "
                           "or use --device cpu")
    if len(gpus) < devices:
        raise BackendError(f"--devices {devices}: TensorFlow sees only {len(gpus)} GPU(s); use --devices "
                           f"{len(gpus)} or fewer")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    return [f"/GPU:{index}" for index in range(devices)]


def tensorflow_platform(device: str) -> str:
    """"gpu" or "cpu": the platform of a TensorFlow device name ("/GPU:0", "/device:CPU:0")."""
    return "gpu" if "GPU" in device.upper() else "cpu"


def onednn_enabled() -> bool:
    """Whether this TensorFlow runs oneDNN's kernels: built with oneDNN and not turned off by TF_ENABLE_ONEDNN_OPTS."""
    from tensorflow.python.util import _pywrap_util_port

    return _pywrap_util_port.IsMklEnabled() and os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") != "0"
