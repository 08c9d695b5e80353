"""The GPU code paths, as far as a CPU can test them: the settings each worker gets for a GPU job, TensorFlow's
device set-up against a stand-in TensorFlow with two GPUs, and the clock read only after the device is done.

No GPU has run mnist-bench yet; what needs one is in benchmarks/gpu_session.sh (docs/gpu.md).
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from backends.base import BackendError
from backends.registry import BACKENDS, process_settings
from common.config import ExperimentConfig
from common.job import Job

GPU_BACKENDS = [spec.name for spec in BACKENDS.values() if spec.gpu]


@pytest.mark.parametrize("precision", ["highest", "default"])
@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_each_gpu_worker_gets_its_frameworks_memory_precision_and_device_settings(backend, precision):
    settings = process_settings(Job(backends=(backend,), device="gpu", precision=precision))[backend]
    frameworks = BACKENDS[backend].frameworks
    highest = precision == "highest"
    if "jax" in frameworks:
        # JAX allocates on demand (not 75% of the card), may see the GPU, and pins full float32 at highest.
        assert settings["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false" and "JAX_PLATFORMS" not in settings
        assert settings.get("JAX_DEFAULT_MATMUL_PRECISION") == ("highest" if highest else None)
        assert settings["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"  # a TensorFlow loaded here anyway maps nothing
    if "tensorflow" in frameworks:
        assert settings.get("NVIDIA_TF32_OVERRIDE") == ("0" if highest else None)
        assert settings["JAX_PLATFORMS"] == "cpu"  # a JAX loaded here anyway stays off the GPU
    assert ("jax" in frameworks) != ("tensorflow" in frameworks), "one framework family per worker"


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_cpu_workers_keep_jax_off_the_gpu(backend):
    settings = process_settings(Job(backends=(backend,), device="cpu"))[backend]
    assert settings["JAX_PLATFORMS"] == "cpu"


def stand_in_tensorflow(gpus: int, calls: list) -> types.ModuleType:
    """A `tensorflow` module with `gpus` GPUs whose tf.config records what it is asked to do."""
    experimental = types.SimpleNamespace(
        enable_tensor_float_32_execution=lambda on: calls.append(("tf32", on)),
        set_memory_growth=lambda device, on: calls.append(("memory_growth", device, on)))
    config = types.SimpleNamespace(
        experimental=experimental,
        list_physical_devices=lambda kind: [f"physical:{kind}:{i}" for i in range(gpus if kind == "GPU" else 1)],
        set_visible_devices=lambda devices, kind: calls.append(("visible", kind, list(devices))),
        set_logical_device_configuration=lambda device, configs: calls.append(("logical", device, len(configs))),
        LogicalDeviceConfiguration=lambda: object())
    module = types.ModuleType("tensorflow")
    module.config = config
    return module


@pytest.mark.parametrize("tf32_override, tf32_on", [("0", False), (None, True)])
def test_tensorflow_on_two_gpus_gets_memory_growth_and_the_pinned_tf32(monkeypatch, tf32_override, tf32_on):
    from backends.devices import configure_tensorflow

    calls = []
    monkeypatch.setitem(sys.modules, "tensorflow", stand_in_tensorflow(2, calls))
    if tf32_override is None:
        monkeypatch.delenv("NVIDIA_TF32_OVERRIDE", raising=False)
    else:
        monkeypatch.setenv("NVIDIA_TF32_OVERRIDE", tf32_override)
    assert configure_tensorflow("gpu", 2) == ["/GPU:0", "/GPU:1"]
    assert calls == [("tf32", tf32_on), ("memory_growth", "physical:GPU:0", True),
                     ("memory_growth", "physical:GPU:1", True)]
    with pytest.raises(BackendError, match="TensorFlow sees only 2 GPU"):
        configure_tensorflow("gpu", 3)


def test_tensorflow_on_the_cpu_is_hidden_from_the_gpus(monkeypatch):
    from backends.devices import configure_tensorflow

    calls = []
    monkeypatch.setitem(sys.modules, "tensorflow", stand_in_tensorflow(1, calls))
    assert configure_tensorflow("cpu", 2) == ["/CPU:0", "/CPU:1"]
    assert ("visible", "GPU", []) in calls and ("logical", "physical:CPU:0", 2) in calls
    assert not [call for call in calls if call[0] == "memory_growth"]


def test_the_step_clock_is_read_only_after_the_device_finished_the_step(monkeypatch):
    """With --step-times a per-step JAX trainer clocks each step after waiting for it (what blocks on a GPU);
    without, it waits once, for the first step, and reads the epoch's metrics in one transfer at its end."""
    import jax

    from backends import flax_models
    from common.workloads import initial_weights
    from helpers import make_trainer

    config = ExperimentConfig(epochs=1, batch_size=8, train_limit=32, test_limit=8)
    trainer = make_trainer("flax", config, {0: initial_weights(config, 0)})
    events = []
    real_block, real_get = jax.block_until_ready, jax.device_get

    def block_until_ready(value):
        events.append("synchronized")
        return real_block(value)

    def device_get(value):
        events.append("read")
        return real_get(value)

    monkeypatch.setattr(flax_models.jax, "block_until_ready", block_until_ready)
    monkeypatch.setattr(flax_models.jax, "device_get", device_get)
    monkeypatch.setattr(flax_models, "time", types.SimpleNamespace(perf_counter=lambda: events.append("clock")
                                                                   or float(len(events))))
    rng = np.random.default_rng(0)
    x, y = rng.random((32, 784), dtype=np.float32), rng.integers(0, 10, 32)
    batches = [np.arange(i, i + 8) for i in range(0, 32, 8)]
    trainer.train_one_epoch(x, y, batches, time_steps=True)
    assert [event for event in events if event != "read"] == ["synchronized", "clock"] * 4
    events.clear()
    log = trainer.train_one_epoch(x, y, batches)
    assert events.count("synchronized") == 1 and events.count("read") == 1 and log.step_end_s is None


def test_the_op_table_reads_device_ops_on_a_gpu_and_xla_threads_on_the_cpu():
    from benchmarks.report.profile_ops import op_times_ms

    def plane(name, **lines):
        return types.SimpleNamespace(name=name, lines=[types.SimpleNamespace(
            name=line, events=[types.SimpleNamespace(name=op, duration_ns=ns) for op, ns in events])
            for line, events in lines.items()])

    gpu = [plane("/device:GPU:0", **{"XLA Ops": [("gemm_fusion", 2e6), ("gemm_fusion", 1e6), ("loop_add", 5e5)],
                                     "XLA Modules": [("jit_train_step", 4e6)]}),
           plane("/host:CPU", python=[("train_epoch", 9e6)])]
    assert op_times_ms(gpu) == {"gemm_fusion": 3.0, "loop_add": 0.5}
    cpu = [plane("/host:CPU", python=[("train_epoch", 9e6)],
                 **{"tf_XLAEigen/1": [("ThunkExecutor::Execute", 7e6), ("dot.6", 2e6), ("while", 6e6)],
                    "tf_XLAPjRtCpuClient/2": [("SlinkyThreadPool::Await", 1e6), ("ynn_fusion.6", 1e6), ("dot.6", 1e6)]})]
    assert op_times_ms(cpu) == {"dot.6": 3.0, "ynn_fusion.6": 1.0}
