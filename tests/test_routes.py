"""Kernel routes: the XLA flags each backend's worker runs with (its own route, or --xla-flags), how they reach
the worker's environment and the run's record, the refusal of flags this jaxlib does not know, the routes read
back from compiled programs, and JAX's persistent compilation cache (--compile-cache)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backends.registry import BACKENDS, DEFAULT_BACKENDS, process_settings, xla_route
from backends.routes import format_routes, kernel_routes, parse_computations, tensorflow_graph_routes
from benchmarks.cli import main
from benchmarks.harness.parent import HarnessError, check_xla_flags
from common.config import ExperimentConfig
from common.job import Job
from common.validation import ConfigError

JAX_BACKENDS = [name for name, spec in BACKENDS.items() if "jax" in spec.frameworks]
DATA = Path(__file__).parent / "data"


def test_routes_of_a_cpu_program_from_its_optimized_hlo():
    # Lines of jaxlib 0.10.2's optimized HLO of the convnet's gradient (reduce_window pooling, XLA's defaults).
    text = (DATA / "hlo-cpu-convnet-grad.txt").read_text()
    computations, entry = parse_computations(text)
    assert entry == "main.12" and "fused_computation.8" in computations
    assert kernel_routes(text, "cpu") == {
        "convolution": {"YNNPACK": 1},  # a kCustom fusion whose body is the convolution, backend_config __ynn_fusion
        "GEMM": {"Eigen": 1},  # a loose dot: the CPU runtime's Eigen thunk
        "scatter": {"XLA codegen": 1},  # reduce_window's gradient, expanded into a scatter loop
        "elementwise": {"XLA codegen": 1},  # bias + ReLU, a kLoop fusion
    }


def test_routes_inside_a_scanned_loop_and_on_a_gpu():
    # A while loop's body is walked (a fused epoch is one); custom calls and Triton fusions name their library.
    routes = kernel_routes((DATA / "hlo-gpu-scan-snippet.txt").read_text(), "gpu")
    assert routes == {"convolution": {"cuDNN": 1}, "GEMM": {"Triton": 1, "cuBLAS": 1},
                      "elementwise": {"XLA codegen": 1}}
    assert format_routes(routes) == "convolution: cuDNN 1; GEMM: Triton 1, cuBLAS 1; elementwise: XLA codegen 1"
    assert format_routes({}) == "—"


def test_executed_tensorflow_kernels_are_classed_and_credited_to_onednn_or_eigen():
    # The ops of a convnet train_step's partitioned graph as TensorFlow 2.21 ran it with oneDNN on (run metadata).
    ops = ["ReadVariableOp", "_MklNativeFusedConv2D", "_MklNativeMaxPool", "_MklMatMul", "_MklNativeFusedMatMul",
           "_MklSoftmax", "_MklNativeMaxPoolGrad", "_MklNativeConv2DBackpropFilterWithBias", "ReluGrad", "BiasAddGrad",
           "Sum", "SoftmaxCrossEntropyWithLogits", "NoOp", "_Retval"]
    assert tensorflow_graph_routes(ops) == {
        "convolution": {"oneDNN": 2}, "GEMM": {"oneDNN": 2}, "pooling gradient": {"oneDNN": 1},
        "pooling": {"oneDNN": 1}, "reduction": {"TensorFlow kernels (Eigen)": 1},
        "elementwise": {"TensorFlow kernels (Eigen)": 3, "oneDNN": 1}}
    # Without oneDNN the same graph keeps TensorFlow's own kernels (and Grappler's `_Fused...` names).
    assert tensorflow_graph_routes(["MatMul", "_FusedConv2D"]) == {"convolution": {"TensorFlow kernels (Eigen)": 1},
                                                                   "GEMM": {"TensorFlow kernels (Eigen)": 1}}


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_reference_rows_run_xlas_defaults_and_a_given_route_replaces_any_backends_own(model, monkeypatch):
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    config = ExperimentConfig(model=model)
    for name in DEFAULT_BACKENDS:
        assert xla_route(name, Job(backends=(name,), config=config)) == ""
    # The fast convnet variants run their measured route (YNNPACK off); the reference rows never do.
    for name in ("flax-fused", "flax-vmap"):
        own = xla_route(name, Job(backends=(name,), config=config))
        assert own == ("--xla_cpu_experimental_ynn_fusion_type=" if model == "cnn" else
                       "--xla_cpu_multi_thread_eigen=false" if name == "flax-fused" else "")
        assert xla_route(name, Job(backends=(name,), config=config, device="gpu")) == ""  # measured on CPUs only
        if own:
            assert process_settings(Job(backends=(name,), config=config))[name]["XLA_FLAGS"] == own
    given = "--xla_cpu_multi_thread_eigen=false"
    for name in JAX_BACKENDS:
        if model not in BACKENDS[name].models:
            continue
        job = Job(backends=(name,), config=config, xla_flags=given)
        assert xla_route(name, job) == given
        assert process_settings(job)[name]["XLA_FLAGS"] == given
        # '' is XLA's own defaults, even for a backend with a route of its own.
        assert "XLA_FLAGS" not in process_settings(job.replace(xla_flags=""))[name]


def test_a_route_comes_after_the_callers_flags_and_beside_the_host_device_count(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/somewhere")
    job = Job(backends=("flax-fused",), devices=2, xla_flags="--xla_cpu_multi_thread_eigen=false")
    assert process_settings(job)["flax-fused"]["XLA_FLAGS"].split() == [
        "--xla_dump_to=/tmp/somewhere", "--xla_cpu_multi_thread_eigen=false", "--xla_force_host_platform_device_count=2"]
    # TensorFlow's workers never get JAX's route (TensorFlow's XLA aborts on flags it does not know).
    assert "XLA_FLAGS" not in process_settings(job.replace(backends=("keras",), devices=1))["keras"]


def test_xla_flags_are_validated_recorded_and_read_back():
    with pytest.raises(ConfigError, match="xla_flags"):
        Job(backends=("flax",), xla_flags="eigen=false")
    job = Job(backends=("flax",), xla_flags="--xla_cpu_multi_thread_eigen=false")
    assert Job.from_dict(job.to_dict()) == job
    old = job.to_dict()
    del old["xla_flags"]  # results.json written before --xla-flags existed
    assert Job.from_dict(old).xla_flags is None


def test_flags_this_jaxlib_does_not_know_are_refused_in_one_line_before_a_run_folder_exists(tmp_path, capsys):
    check_xla_flags("--xla_cpu_multi_thread_eigen=false")
    with pytest.raises(HarnessError, match="Unknown flag in XLA_FLAGS: --xla_no_such_flag=1"):
        check_xla_flags("--xla_no_such_flag=1")
    out = tmp_path / "run"
    assert main(["run", "--backend", "flax", "--xla-flags=--xla_no_such_flag=1", "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "--xla-flags" in error and "Unknown flag" in error
    assert not out.exists()


def test_a_run_records_the_route_its_workers_ran_with(tmp_path, mnist_data_dir):
    out = tmp_path / "run"
    flags = "--xla_cpu_multi_thread_eigen=false"
    assert main(["run", "--backend", "flax", f"--xla-flags={flags}", "--rounds", "1", "--timing-rounds", "0", "--no-floor", "--epochs", "1",
                 "--train-limit", "320", "--test-limit", "100", "--quiet", "--data-dir", str(mnist_data_dir),
                 "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["job"]["xla_flags"] == flags
    (run,) = results["runs"]
    assert flags in run["settings"]["XLA_FLAGS"]  # what the worker itself had in force
    assert results["environment"]["roofline"] is None
    summary = (out / "summary.md").read_text()
    assert "not measured (--no-floor)" in summary
    # The worker read its train step's routes from XLA: the MLP's three dense layers forward and backward.
    routes = run["kernel_routes"]
    assert routes["source"] == "optimized HLO of the jitted train step" and routes["platform"] == "cpu"
    assert sum(routes["routes"]["GEMM"].values()) >= 6 and routes["xla_flags"] == flags
    assert "flax · cpu: GEMM: " in summary and f"XLA_FLAGS `{flags}`" in summary


def test_info_lists_the_routes_this_machines_frameworks_offer(capsys):
    assert main(["info"]) == 0
    printed = capsys.readouterr().out
    routes = printed[printed.index("kernel routes"):]
    assert "YNNPACK off (Eigen and XLA's own loops): available" in routes
    assert "'--xla_cpu_multi_thread_eigen=false'" in routes and "TensorFlow oneDNN kernels: " in routes


def test_compile_cache_reaches_the_jax_workers_and_fills(tmp_path, mnist_data_dir):
    cache = tmp_path / "cache"
    job = Job(backends=("flax",), compile_cache=str(cache))
    settings = process_settings(job)["flax"]
    assert settings["JAX_COMPILATION_CACHE_DIR"] == str(cache.resolve())
    assert settings["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] == "0"  # mnist-bench's programs compile fast
    assert "JAX_COMPILATION_CACHE_DIR" not in process_settings(job.replace(backends=("keras",)))["keras"]
    out = tmp_path / "run"
    assert main(["run", "--backend", "flax", "--compile-cache", str(cache), "--rounds", "1", "--timing-rounds", "0", "--no-floor", "--epochs",
                 "1", "--train-limit", "320", "--test-limit", "100", "--quiet", "--data-dir", str(mnist_data_dir),
                 "--out", str(out)]) == 0
    assert any(path.name.startswith("jit_train_step") for path in cache.iterdir())  # the step, cached
    (run,) = json.loads((out / "results.json").read_text())["runs"]
    assert run["settings"]["JAX_COMPILATION_CACHE_DIR"] == str(cache.resolve())
