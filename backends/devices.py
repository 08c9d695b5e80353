"""Per-process device set-up for each framework, applied before (or just after) its first import.

Two frameworks never share a process here, but a framework left to its defaults would still grab a
whole GPU: TensorFlow maps all GPU memory at start-up and JAX preallocates 75% of it. The settings
below make each one take what it needs, and pin CPU runs to the CPU.
"""

from __future__ import annotations

import os
import sys

from backends.base import DEVICES, BackendError


def check_device(device: str) -> None:
    """Reject anything but the known device kinds, listing them."""
    if device not in DEVICES:
        raise BackendError(f"unknown device {device!r}; valid devices: {', '.join(DEVICES)}")


def jax_device(device: str):
    """The first JAX device of the asked kind; sets JAX's memory and platform flags if JAX is not loaded yet."""
    check_device(device)
    if "jax" not in sys.modules:
        # Allocate GPU memory on demand instead of grabbing 75% of the card at start-up.
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        if device == "cpu":
            # Skip probing for CUDA/TPU plugins: faster start-up, and no GPU memory touched.
            os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax

    try:
        return jax.devices(device)[0]
    except RuntimeError:
        raise BackendError(f"--device {device}: JAX sees no {device.upper()} (it sees {jax.devices()}); "
                           "install the GPU extra (README 'GPU') or use --device cpu") from None


def configure_tensorflow(device: str) -> str:
    """Hide GPUs from TensorFlow for CPU runs, or turn on memory growth for GPU runs; returns the TF device."""
    check_device(device)
    # Keep TensorFlow's C++ start-up chatter out of the progress display.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if device == "cpu":
        tf.config.set_visible_devices([], "GPU")
        return "/CPU:0"
    if not gpus:
        raise BackendError("--device gpu: TensorFlow sees no GPU; install the GPU extra (README 'GPU') "
                           "or use --device cpu")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    return "/GPU:0"


def cpu_name() -> str:
    """The CPU model, from /proc/cpuinfo where there is one."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()
