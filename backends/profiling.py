"""Each framework's own profiler, started and stopped by name: the trace format TensorBoard's profile
plugin (XProf) reads, `<dir>/plugins/profile/<timestamp>/<host>.xplane.pb` (JAX also writes a Perfetto
`.trace.json.gz` beside it)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def start_trace(frameworks: Iterable[str], directory: Path) -> None:
    """Start tracing this process: tf.profiler for TensorFlow backends, jax.profiler for JAX ones."""
    directory.mkdir(parents=True, exist_ok=True)
    if "tensorflow" in set(frameworks):
        import tensorflow as tf

        tf.profiler.experimental.start(str(directory))
    else:
        import jax

        jax.profiler.start_trace(str(directory), create_perfetto_trace=True)


def stop_trace(frameworks: Iterable[str]) -> None:
    """Stop the trace started by `start_trace` and write it out."""
    if "tensorflow" in set(frameworks):
        import tensorflow as tf

        tf.profiler.experimental.stop()
    else:
        import jax

        jax.profiler.stop_trace()
