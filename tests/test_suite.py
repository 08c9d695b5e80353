"""`mnist-bench suite --quick`: every benchmark runs once, per-backend processes merge into one JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from backends.registry import DEFAULT_BACKENDS
from benchmarks.suite import merge_benchmark_json


@pytest.fixture(scope="module")
def suite_run(tmp_path_factory, mnist_data_dir):
    out = tmp_path_factory.mktemp("suite")
    env = {**os.environ, "MNIST_BENCH_DATA": str(mnist_data_dir)}
    completed = subprocess.run([sys.executable, "-m", "benchmarks.cli", "suite", "--quick", "--out", str(out)],
                               capture_output=True, text=True, env=env, timeout=900)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return out, json.loads((out / "benchmarks.json").read_text()), completed.stdout


def test_every_benchmark_ran_for_every_backend(suite_run):
    _, merged, _ = suite_run
    names = {bench["fullname"].split("::")[-1] for bench in merged["benchmarks"]}
    for backend in DEFAULT_BACKENDS:
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
        assert ("tensorflow" in info) == (info["backend"] == "keras")
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
