"""`mnist-bench suite --quick`: every benchmark runs once, per-backend processes merge into one JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backends.registry import backend_spec
from benchmarks.suite.runner import merge_benchmark_json


# One backend of each kind (Keras on TensorFlow, a per-step and a fused JAX loop, Keras on JAX): the suite's
# machinery is the same for all nine, and `mnist-bench suite --quick` over all nine is a benchmark (2 min).
SUITE_BACKENDS = ("keras", "flax", "keras-jax", "flax-fused")


@pytest.fixture(scope="module")
def suite_run(tmp_path_factory, mnist_data_dir):
    out = tmp_path_factory.mktemp("suite")
    env = {**os.environ, "MNIST_BENCH_DATA": str(mnist_data_dir)}
    completed = subprocess.run([sys.executable, "-m", "benchmarks.cli", "suite", "--quick", "--backend",
                                ",".join(SUITE_BACKENDS), "--out", str(out)],
                               capture_output=True, text=True, env=env, timeout=900)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return out, json.loads((out / "benchmarks.json").read_text()), completed.stdout


def test_every_benchmark_ran_for_every_backend(suite_run):
    _, merged, _ = suite_run
    names = {bench["fullname"].split("::")[-1] for bench in merged["benchmarks"]}
    assert {name[len("test_inference["):-1] for name in names if name.startswith("test_inference[")} == set(SUITE_BACKENDS)
    for backend in SUITE_BACKENDS:
        for expected in (f"test_train_step[{backend}-32]", f"test_train_step[{backend}-512]",
                         f"test_train_epoch[{backend}]", f"test_inference[{backend}]"):
            assert expected in names
    assert {"test_mnist_cold_decode", "test_mnist_cached_load", "test_harness_step_overhead"} <= names
    assert merged["machine_info"] and "benchmarks" in merged


def test_extra_info_carries_throughput_and_versions(suite_run):
    _, merged, _ = suite_run
    steps = [b for b in merged["benchmarks"] if b["name"].startswith("test_train_step")]
    for bench in steps:
        info = bench["extra_info"]
        assert info["samples_per_s"] > 0 and info["gflops_per_s"] > 0 and info["device"]
        assert info["flops_per_sample"] == 1_007_104
        assert info["gflops_per_s"] == pytest.approx(
            info["samples_per_s"] * 1_007_104 / 1e9, rel=1e-9)
        on_tensorflow = "tensorflow" in backend_spec(info["backend"]).frameworks
        assert ("tensorflow" in info) == on_tensorflow
        # Full float32 pinned by default, as every run and verify: recorded with each figure.
        pinned = info["settings"].get("NVIDIA_TF32_OVERRIDE" if on_tensorflow else "JAX_DEFAULT_MATMUL_PRECISION")
        assert pinned == ("0" if on_tensorflow else "highest")
        assert info["peak_rss_mib"] > 50
    assert {b["group"] for b in steps} == {"train step, batch 32", "train step, batch 512"}


def test_plot_and_table(suite_run):
    out, _, stdout = suite_run
    assert (out / "suite.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "keras-jax ms/step" in stdout and "pytest-benchmark compare" in stdout


def test_pytest_benchmark_compare_reads_the_merged_json(suite_run):
    out, _, _ = suite_run
    # The console script installed beside this interpreter, as a user would call it.
    cli = Path(sys.executable).with_name("pytest-benchmark")
    completed = subprocess.run([str(cli), "compare", str(out / "benchmarks.json"), "--group-by=group"],
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert "train step, batch 32" in completed.stdout and "test_inference[flax]" in completed.stdout


def test_merge_keeps_every_benchmark_and_the_first_machine():
    parts = [{"machine_info": {"node": "a"}, "benchmarks": [{"name": "x"}]},
             {"machine_info": {"node": "b"}, "benchmarks": [{"name": "y"}, {"name": "z"}]}]
    merged = merge_benchmark_json(parts)
    assert [b["name"] for b in merged["benchmarks"]] == ["x", "y", "z"] and merged["machine_info"]["node"] == "a"
    with pytest.raises(ValueError):
        merge_benchmark_json([])


TIME_STATS = ("min", "max", "mean", "stddev", "median", "iqr", "q1", "q3", "ld15iqr", "hd15iqr", "total")


def scaled_baseline(merged: dict, factor: float, path: Path) -> Path:
    """A saved suite whose every timing is `factor` times the measured one (ops scaled inversely)."""
    data = json.loads(json.dumps(merged))
    for bench in data["benchmarks"]:
        for key in TIME_STATS:
            if isinstance(bench["stats"].get(key), (int, float)):
                bench["stats"][key] *= factor
        bench["stats"]["ops"] /= factor
        bench["stats"]["data"] = [value * factor for value in bench["stats"]["data"]]
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("factor, code", [(0.01, 1), (100.0, 0)])
def test_baseline_gate_fails_only_when_slower(suite_run, tmp_path, mnist_data_dir, factor, code):
    # Against a baseline 100x faster than this machine every benchmark regressed; against one 100x slower
    # none did: the verdict cannot depend on how fast the machine is.
    baseline = scaled_baseline(suite_run[1], factor, tmp_path / "baseline.json")
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.cli", "suite", "--quick", "--backend", "flax", "--baseline", str(baseline),
         "--fail-over", "20", "--out", str(tmp_path / "suite")], capture_output=True, text=True, timeout=900,
        env={**os.environ, "MNIST_BENCH_DATA": str(mnist_data_dir)})
    assert completed.returncode == code, completed.stderr[-3000:]
    if code:
        assert f"slower than {baseline} by more than 20% (new/old time, 95% CI over rounds wholly above 1.2)" \
            in completed.stderr
        assert "test_train_step[flax-32]" in completed.stderr
    assert (tmp_path / "suite" / "benchmarks.json").exists()  # results are kept either way


def test_fail_over_needs_a_baseline(capsys):
    from benchmarks.cli import main

    assert main(["suite", "--fail-over", "10"]) == 2
    assert "--fail-over: needs --baseline" in capsys.readouterr().err


def bench_entry(name: str, data: list[float]) -> dict:
    return {"name": name, "fullname": f"suite::{name}", "stats": {"data": data}}


def test_regression_gate_needs_the_whole_ci_above_the_threshold():
    from benchmarks.suite.runner import regressions_against

    rng = np.random.default_rng(0)
    old = [bench_entry(name, list(1e-3 * rng.lognormal(0, 0.03, 20))) for name in ("a", "b", "c")]
    new = [bench_entry("a", list(1.5e-3 * rng.lognormal(0, 0.03, 20))),  # 50% slower: regressed
           bench_entry("b", list(1.1e-3 * rng.lognormal(0, 0.03, 20))),  # 10% slower: inside a 20% threshold
           bench_entry("c", [1.3e-3, 0.9e-3, 1.0e-3])]  # one slow round, a wide CI: not decided from a point
    regressed = regressions_against({"benchmarks": new}, {"benchmarks": old}, 0.20)
    assert len(regressed) == 1 and regressed[0].startswith("a: new/old time 1.5")
    with pytest.raises(ValueError, match="no per-round timings"):
        regressions_against({"benchmarks": new}, {"benchmarks": [{"name": "a", "fullname": "suite::a", "stats": {}}]}, 0.2)
