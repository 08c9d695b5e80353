"""Backends by name, imported only when asked for (the JAX path never imports TensorFlow)."""

from __future__ import annotations

import dataclasses
import functools
import importlib

from backends.base import BackendError, TrainerFactory
from backends.devices import configure_process, framework_environment
from common.config import MODELS

# Steps per compiled call for keras-tuned; README "Performance" shows how it was chosen.
KERAS_TUNED_STEPS = 50
# Measured (Keras 3.15, TF 2.21, CPU): fit under MirroredStrategy with jit_compile=True fails with XLA's
# "Trying to access resource ... located in device CPU:1 from device CPU:0" (TF's XLA known issues).
XLA_MIRRORED = "fit with jit_compile=True under tf.distribute.MirroredStrategy fails in XLA (variables on another device)"


@dataclasses.dataclass(frozen=True)
class BackendSpec:
    """Where a backend lives and what it is."""

    name: str
    module: str
    factory: str
    description: str
    frameworks: tuple[str, ...]
    options: tuple[tuple[str, object], ...] = ()
    keras_backend: str | None = None
    # How many seeds one worker process trains (None: all of a run's seeds, in one program).
    seeds_per_process: int | None = 1
    # Why `--devices N` > 1 is refused; None: batches split over N devices (data parallel).
    single_device_reason: str | None = None
    # The workloads (common.config.MODELS) this backend can build.
    models: tuple[str, ...] = MODELS
    # Why `--device gpu` is refused; None: it runs on CPU and GPU.
    cpu_only_reason: str | None = None

    @property
    def data_parallel(self) -> bool:
        """Whether `--devices N` can split this backend's batches over several devices."""
        return self.single_device_reason is None


BACKENDS = {spec.name: spec for spec in (
    BackendSpec("keras", "backends.keras_models", "create_trainer",
                "Keras 3 on TensorFlow, model.fit (the reference)", ("tensorflow", "keras"),
                keras_backend="tensorflow"),
    BackendSpec("flax", "backends.flax_mlp", "create_trainer",
                "Flax NNX + Optax, jitted train step in a Python loop", ("jax", "flax", "optax")),
    BackendSpec("keras-jax", "backends.keras_models", "create_trainer",
                "Keras 3 on its JAX backend, model.fit", ("jax", "keras"), keras_backend="jax"),
    # Fast variants: the same model and math, tuned; they sit beside the reference rows in the tables.
    BackendSpec("flax-fused", "backends.flax_fused", "create_trainer",
                "Flax, whole epoch as one jitted lax.scan over device-resident data", ("jax", "flax", "optax")),
    BackendSpec("flax-vmap", "backends.flax_fused", "create_vmapped_trainer",
                "Flax fused epoch, all --seeds in one jax.vmap-ed program", ("jax", "flax", "optax"),
                seeds_per_process=None),
    BackendSpec("keras-xla", "backends.keras_models", "create_trainer",
                "Keras 3 on TensorFlow, model.fit with jit_compile=True (XLA on CPU)", ("tensorflow", "keras"),
                (("jit_compile", True),), keras_backend="tensorflow", single_device_reason=XLA_MIRRORED),
    BackendSpec("keras-tuned", "backends.keras_models", "create_trainer",
                f"Keras 3 on TensorFlow, jit_compile=True and steps_per_execution={KERAS_TUNED_STEPS}",
                ("tensorflow", "keras"), (("jit_compile", True), ("steps_per_execution", KERAS_TUNED_STEPS)),
                keras_backend="tensorflow", single_device_reason=XLA_MIRRORED),
    BackendSpec("tf-fused", "backends.tf_fused", "create_trainer",
                "TensorFlow 2 without Keras, whole epoch as one tf.function(jit_compile=True) over device-resident "
                "data", ("tensorflow",),
                single_device_reason="its whole epoch is one XLA program, with no step boundary for tf.distribute "
                "to all-reduce at"),
    BackendSpec("flax-ffi", "backends.flax_fused", "create_ffi_trainer",
                "flax-fused with its matrix products (NumPy's BLAS) and Adam update (one pass) as XLA FFI kernels "
                "on XLA's thread pool", ("jax", "flax", "optax"), models=("mlp",),
                single_device_reason="its FFI kernels are opaque to XLA's SPMD partitioner",
                cpu_only_reason="its FFI kernels are CPU code"),
)}
DEFAULT_BACKENDS = ("keras", "flax", "keras-jax")


def backend_spec(name: str) -> BackendSpec:
    """The spec registered under `name`; an unknown name lists the valid ones."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise BackendError(f"unknown backend {name!r}; valid backends: {', '.join(BACKENDS)}") from None


def check_data_parallel(name: str, devices: int) -> None:
    """Refuse `--devices N` > 1 for a backend that trains on one device, naming those that can."""
    if devices > 1 and not backend_spec(name).data_parallel:
        able = ", ".join(spec.name for spec in BACKENDS.values() if spec.data_parallel)
        raise BackendError(f"backend {name!r} trains on one device only ({backend_spec(name).single_device_reason}); "
                           f"drop --devices {devices}, or use a data-parallel backend: {able}")


def check_device(name: str, device: str) -> None:
    """Refuse `--device gpu` for a CPU-only backend, naming those that run on a GPU."""
    spec = backend_spec(name)
    if device != "cpu" and spec.cpu_only_reason is not None:
        able = ", ".join(other.name for other in BACKENDS.values() if other.cpu_only_reason is None)
        raise BackendError(f"backend {name!r} runs on the CPU only ({spec.cpu_only_reason}); use --device cpu, "
                           f"or a backend that runs on a GPU: {able}")


def runs(spec: BackendSpec, model: str, device: str) -> bool:
    """Whether `spec` can train `model` on `device` (what `--backend all` keeps)."""
    return model in spec.models and (device == "cpu" or spec.cpu_only_reason is None)


def check_model(name: str, model: str) -> None:
    """Refuse a model the backend cannot build, listing the models it has and the backends that have `model`."""
    spec = backend_spec(name)
    if model not in spec.models:
        able = ", ".join(other.name for other in BACKENDS.values() if model in other.models)
        raise BackendError(f"backend {name!r} does not implement --model {model}; it has {', '.join(spec.models)}. "
                           f"Backends with {model}: {able or 'none'}")


def prepare_process(name: str, device: str, precision: str = "highest", devices: int = 1) -> None:
    """Set this process' framework environment for backend `name` on `device`; call it before `get_factory`."""
    spec = backend_spec(name)
    configure_process(spec.frameworks, device, spec.keras_backend, precision, devices)


def process_settings(name: str, device: str, precision: str = "highest", devices: int = 1) -> dict[str, str]:
    """The environment `prepare_process` gives backend `name`'s processes: recorded with every run."""
    spec = backend_spec(name)
    return framework_environment(spec.frameworks, device, spec.keras_backend, precision, devices)


def get_factory(name: str) -> TrainerFactory:
    """Import the backend's module now and return its trainer factory, bound to its options."""
    spec = backend_spec(name)
    factory = getattr(importlib.import_module(spec.module), spec.factory)
    options = dict(spec.options, backend=name)
    if spec.keras_backend:
        options["keras_backend"] = spec.keras_backend
    return functools.partial(factory, **options)
