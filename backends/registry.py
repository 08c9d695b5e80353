"""Backends by name, imported only when asked for (the JAX path never imports TensorFlow).

The registry is the one checked factory: `create_trainer(job, ...)` checks once that the backend can train
the job's model on its device and device count, then hands the backend's factory a `Placement` and the
builder of the model in the backend's framework family. Backend modules never import this module and
never repeat those checks.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping

from backends.base import BackendError, ModelBuilder, Placement, Trainer
from backends.frameworks import configure_process, framework_environment, missing_frameworks
from common.job import Job
from common.weights import Weights
from common.workloads import get_workload

# Steps per compiled call for keras-tuned; docs/performance.md shows how it was chosen.
KERAS_TUNED_STEPS = 50
# `model.compile`'s options as the tutorial leaves them (Keras' own defaults): the reference rows'.
KERAS_COMPILE_DEFAULTS = (("jit_compile", "auto"), ("steps_per_execution", 1))
# fit under MirroredStrategy with jit_compile=True fails in XLA with "Trying to access resource ... located in device
# CPU:1 from device CPU:0" (Keras 3.15, TF 2.21; TF's XLA known issues).
XLA_MIRRORED = "fit with jit_compile=True under tf.distribute.MirroredStrategy fails in XLA (variables on another device)"


# The fast Flax variants' kernel routes, each the fastest that benchmarks/studies/xla_routes.py found on the 2-core
# machines (docs/performance.md, "Kernel routes"). The convnet: YNNPACK's fusions off, whose weight-gradient
# convolutions are slower than Eigen's. The batch-32 MLP: Eigen on one thread per op, whose tiny products lose more
# to handing work to a second thread than they gain; flax-vmap's MLP keeps XLA's defaults (its seeds' products are
# large enough to share the cores).
CNN_ROUTE = {("cnn", "cpu"): "--xla_cpu_experimental_ynn_fusion_type="}
MLP_ROUTE = {("mlp", "cpu"): "--xla_cpu_multi_thread_eigen=false"}

# Each framework family's builder of each model, as "module:name" (imported only when a trainer is made). A
# backend can train exactly the models its family has a builder for; a new model adds one line per family.
FLAX_BUILDERS = {
    "mlp": "backends.flax_models:MLP",
    "cnn": "backends.flax_models:ConvNet",
}
KERAS_BUILDERS = {
    "mlp": "backends.keras_models:mlp_layers",
    "cnn": "backends.keras_models:cnn_layers",
}
TENSORFLOW_BUILDERS = {
    "mlp": "backends.tf_fused:mlp_logits",
    "cnn": "backends.tf_fused:cnn_logits",
}


@dataclasses.dataclass(frozen=True)
class BackendSpec:
    """Where a backend lives and what it is."""

    name: str
    # Its trainer factory (backends.base.TrainerFactory), as "module:name".
    factory: str
    description: str
    frameworks: tuple[str, ...]
    # Its family's builders, by model: the models it can train.
    builders: Mapping[str, str]
    options: tuple[tuple[str, object], ...] = ()
    keras_backend: str | None = None
    # How many seeds one worker process trains (None: all of a run's seeds, in one program).
    seeds_per_process: int | None = 1
    # What it can do beyond one CPU device, claimed only once shown: `data_parallel`, batches split over `--devices
    # N` (tests/test_backends.py holds each such backend on two devices to its one-device run); `gpu`, `--device gpu`
    # (docs/gpu.md's session runs each). A backend that claims neither is refused both, with `single_device_reason`
    # and `cpu_only_reason` saying why.
    data_parallel: bool = False
    gpu: bool = False
    single_device_reason: str = "it has not been shown to split its batches over several devices"
    cpu_only_reason: str = "it has not been shown to train on a GPU"
    # A JAX backend's XLA flags by model and device ("cpu" or "gpu"): the kernel route it runs best on; a
    # fast variant's own choice, measured (docs/performance.md). The reference rows run XLA's defaults.
    xla_routes: Mapping[tuple[str, str], str] = dataclasses.field(default_factory=dict)

    @property
    def models(self) -> tuple[str, ...]:
        """The workloads this backend can train: those its family has builders for."""
        return tuple(self.builders)


BACKENDS = {spec.name: spec for spec in (
    BackendSpec("keras", "backends.keras_models:create_trainer",
                "Keras 3 on TensorFlow, model.fit (the reference)", ("tensorflow", "keras"), KERAS_BUILDERS,
                KERAS_COMPILE_DEFAULTS, keras_backend="tensorflow", data_parallel=True, gpu=True),
    BackendSpec("flax", "backends.flax_models:create_trainer",
                "Flax NNX + Optax, jitted train step in a Python loop", ("jax", "flax", "optax"), FLAX_BUILDERS,
                data_parallel=True, gpu=True),
    BackendSpec("keras-jax", "backends.keras_models:create_trainer",
                "Keras 3 on its JAX backend, model.fit", ("jax", "keras"), KERAS_BUILDERS, KERAS_COMPILE_DEFAULTS,
                keras_backend="jax", data_parallel=True, gpu=True),
    # Fast variants: the same model and math, tuned; they sit beside the reference rows in the tables.
    BackendSpec("flax-fused", "backends.flax_fused:create_trainer",
                "Flax, whole epoch as one jitted lax.scan over device-resident data", ("jax", "flax", "optax"),
                FLAX_BUILDERS, data_parallel=True, gpu=True, xla_routes={**CNN_ROUTE, **MLP_ROUTE}),
    BackendSpec("flax-vmap", "backends.flax_fused:create_vmapped_trainer",
                "Flax fused epoch, all --seeds in one jax.vmap-ed program", ("jax", "flax", "optax"), FLAX_BUILDERS,
                seeds_per_process=None, data_parallel=True, gpu=True, xla_routes=CNN_ROUTE),
    BackendSpec("keras-xla", "backends.keras_models:create_trainer",
                "Keras 3 on TensorFlow, model.fit with jit_compile=True (XLA on CPU)", ("tensorflow", "keras"),
                KERAS_BUILDERS, (("jit_compile", True), ("steps_per_execution", 1)), keras_backend="tensorflow",
                gpu=True, single_device_reason=XLA_MIRRORED),
    BackendSpec("keras-tuned", "backends.keras_models:create_trainer",
                f"Keras 3 on TensorFlow, jit_compile=True and steps_per_execution={KERAS_TUNED_STEPS}",
                ("tensorflow", "keras"), KERAS_BUILDERS,
                (("jit_compile", True), ("steps_per_execution", KERAS_TUNED_STEPS)),
                keras_backend="tensorflow", gpu=True, single_device_reason=XLA_MIRRORED),
    BackendSpec("tf-fused", "backends.tf_fused:create_trainer",
                "TensorFlow 2 without Keras, whole epoch as one tf.function(jit_compile=True) over device-resident "
                "data", ("tensorflow",), TENSORFLOW_BUILDERS, gpu=True,
                single_device_reason="its whole epoch is one XLA program, with no step boundary for tf.distribute "
                "to all-reduce at"),
    # Its FFI product replaces nnx.Linear's: the dense layers of the MLP only.
    BackendSpec("flax-ffi", "backends.flax_fused:create_ffi_trainer",
                "flax-fused with its matrix products (NumPy's BLAS) and Adam update (one pass) as XLA FFI kernels "
                "on XLA's thread pool", ("jax", "flax", "optax"), {"mlp": FLAX_BUILDERS["mlp"]},
                single_device_reason="its FFI kernels are opaque to XLA's SPMD partitioner",
                cpu_only_reason="its FFI kernels are CPU code"),
)}
DEFAULT_BACKENDS = ("keras", "flax", "keras-jax")


def register_backend(spec: BackendSpec) -> None:
    """Add a backend to this process' registry (a study's variant of a row, say); its workers must register it too,
    before the harness' worker runs (`run_benchmark(worker_command=...)`). A registered name is refused."""
    if spec.name in BACKENDS:
        raise BackendError(f"backend {spec.name!r} is registered already; choose another name")
    BACKENDS[spec.name] = spec


def unregister_backend(name: str) -> None:
    """Take a backend that `register_backend` added out of this process' registry again (a no-op if it is gone)."""
    BACKENDS.pop(name, None)


def backend_spec(name: str) -> BackendSpec:
    """The spec registered under `name` (or under the `flax` of a label `flax#2`); an unknown name lists the valid ones."""
    try:
        return BACKENDS[base_name(name)]
    except KeyError:
        raise BackendError(f"unknown backend {name!r}; valid backends: {', '.join(BACKENDS)}") from None


def base_name(label: str) -> str:
    """The backend a run label names: `flax#2` (the second `flax` of an A/A job) and `flax@jax09` (flax on the
    stack jax09) are `flax`."""
    name, at, stack = label.rpartition("@")
    label = name if at and name and stack else label
    name, _, copy = label.rpartition("#")
    return name if name and copy.isdigit() else label


def backend_labels(names) -> tuple[str, ...]:
    """Backend names as run labels: a name given more than once becomes `name#1`, `name#2`, ... (an A/A check)."""
    names = list(names)
    seen: dict[str, int] = {}
    labels = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        labels.append(f"{name}#{seen[name]}" if names.count(name) > 1 else name)
    return tuple(labels)


def check_data_parallel(name: str, devices: int) -> None:
    """Refuse `--devices N` > 1 for a backend that trains on one device, naming those that can."""
    if devices > 1 and not backend_spec(name).data_parallel:
        able = ", ".join(spec.name for spec in BACKENDS.values() if spec.data_parallel)
        raise BackendError(f"backend {name!r} trains on one device only ({backend_spec(name).single_device_reason}); "
                           f"drop --devices {devices}, or use a data-parallel backend: {able}")


def check_device(name: str, device: str) -> None:
    """Refuse `--device gpu` for a CPU-only backend, naming those that run on a GPU."""
    spec = backend_spec(name)
    if device != "cpu" and not spec.gpu:
        able = ", ".join(other.name for other in BACKENDS.values() if other.gpu)
        raise BackendError(f"backend {name!r} runs on the CPU only ({spec.cpu_only_reason}); use --device cpu, "
                           f"or a backend that runs on a GPU: {able}")


def runs(spec: BackendSpec, model: str, device: str) -> bool:
    """Whether `spec` can train `model` on `device` (what `--backend all` keeps)."""
    return model in spec.models and (device == "cpu" or spec.gpu)


def check_model(name: str, model: str) -> None:
    """Refuse a model the backend cannot build, listing the models it has and the backends that have `model`."""
    get_workload(model)  # an unknown model: the same one-line error everywhere
    spec = backend_spec(name)
    if model not in spec.models:
        able = ", ".join(other.name for other in BACKENDS.values() if model in other.models)
        raise BackendError(f"backend {name!r} does not implement --model {model}; it has {', '.join(spec.models)}. "
                           f"Backends with {model}: {able or 'none'}")


def check_can_run(job: Job) -> None:
    """What no machine could do, for every backend of `job`: an unknown name, a model it lacks, a GPU for a
    CPU-only backend, or several devices for a single-device backend."""
    for name in job.backends:
        check_model(name, job.config.model)
        check_device(name, job.device)
        check_data_parallel(name, job.devices)


def check_installed(job: Job) -> None:
    """Refuse a backend of `job` whose framework this interpreter lacks, naming what installs it."""
    for name in job.backends:
        for framework in missing_frameworks(backend_spec(name).frameworks):
            raise BackendError(f"backend {name!r} needs {framework.name}, which is not installed here: "
                               f"{framework.install_hint}")


def xla_route(name: str, job: Job) -> str:
    """The XLA flags backend `name` trains `job` with: the job's --xla-flags when given, else the backend's own
    route for the model and device (none for the reference rows)."""
    if job.xla_flags is not None:
        return job.xla_flags
    return backend_spec(name).xla_routes.get((job.config.model, job.device), "")


def prepare_process(job: Job) -> None:
    """Set this process' framework environment for the job's one backend; call it before `create_trainer`."""
    spec = backend_spec(job.backend)
    configure_process(spec.frameworks, job, spec.keras_backend, xla_route(job.backend, job))


def process_settings(job: Job) -> dict[str, dict[str, str]]:
    """The environment `prepare_process` gives each backend of `job`: recorded with every run."""
    return {name: framework_environment(backend_spec(name).frameworks, job, backend_spec(name).keras_backend,
                                        xla_route(name, job))
            for name in job.backends}


def resolve(reference: str):
    """The object a "module:name" reference names, importing its module now."""
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


def model_builder(job: Job) -> ModelBuilder:
    """The job's backend's builder of the job's model (imports the backend's module, and so its framework)."""
    check_model(job.backend, job.config.model)
    return resolve(backend_spec(job.backend).builders[job.config.model])


def load_backend(job: Job) -> None:
    """Import the job's backend's factory and builder (and so its framework) now, so start-up can time it."""
    resolve(backend_spec(job.backend).factory)
    model_builder(job)


def create_trainer(job: Job, initial_weights: Mapping[int, Weights]) -> Trainer:
    """The job's backend's trainer for these seeds, checked once here: model, device, device count, install."""
    check_can_run(job)
    check_installed(job)
    spec = backend_spec(job.backend)
    options = dict(spec.options)
    if spec.keras_backend:
        options["keras_backend"] = spec.keras_backend
    return resolve(spec.factory)(job.config, initial_weights, Placement(job.device, job.devices),
                                 build=model_builder(job), backend=job.backend, **options)
