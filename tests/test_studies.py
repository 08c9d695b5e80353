"""The studies beside the product (benchmarks/studies/) run end to end in a tiny mode, so none of them rots, and the
installed package leaves them out."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = ["--rounds", "2", "--epochs", "2", "--train-limit", "320"]


def study(name: str, *argv: str) -> subprocess.CompletedProcess:
    """`python -m benchmarks.studies.NAME ARGV` from the checkout, as the studies' README runs them."""
    return subprocess.run([sys.executable, "-m", f"benchmarks.studies.{name}", *argv], cwd=REPO, capture_output=True,
                          text=True, timeout=600)


def test_plain_vs_harness_times_both_plain_scripts_beside_their_rows(tmp_path, mnist_data_dir):
    done = study("plain_vs_harness", str(mnist_data_dir), str(tmp_path), *TINY, "--backends", "keras-jax,flax",
                 "--goal-only")
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads((tmp_path / "plain_vs_harness-mlp.json").read_text())
    assert [(row["backend"], row["plain"]) for row in rows] == [("keras-jax", "keras_fit.py"),
                                                                ("flax", "flax_loop.py --style optax")]
    for row in rows:
        assert len(row["harness_epoch_s"]) == len(row["plain_epoch_s"]) == 2 and row["low"] <= row["ratio"] <= row["high"]
    assert "| keras-jax | keras_fit.py |" in (tmp_path / "plain_vs_harness-mlp.md").read_text()


def test_xla_routes_sets_each_route_against_the_first(tmp_path, mnist_data_dir):
    routes = ["", "--xla_cpu_multi_thread_eigen=false"]
    done = study("xla_routes", str(mnist_data_dir), str(tmp_path), *TINY, "--epochs", "3",
                 *[f"--route={route}" for route in routes])
    assert done.returncode == 0, done.stderr[-2000:]
    table = json.loads((tmp_path / "xla_routes-flax-fused-mlp.json").read_text())
    assert [row["route"] for row in table["rows"]] == routes and table["rows"][0]["speed"] == pytest.approx(1.0)
    assert all(len(row["epoch_s"]) == 2 for row in table["rows"])


def test_the_built_wheel_holds_the_product_and_no_study(tmp_path):
    source = tmp_path / "source"  # built from a copy: setuptools leaves build/ and *.egg-info where it builds
    source.mkdir()
    for item in ("pyproject.toml", "README.md", "common", "backends", "benchmarks"):
        copy = shutil.copytree if (REPO / item).is_dir() else shutil.copy
        copy(REPO / item, source / item, **({"ignore": shutil.ignore_patterns("__pycache__")} if copy is shutil.copytree
                                            else {}))
    built = subprocess.run([sys.executable, "-m", "uv", "build", "--wheel", "--out-dir", str(tmp_path), str(source)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp_path.glob("mnist_bench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "benchmarks/harness/worker.py" in names and "backends/ffi_kernels.cc" in names
    assert {"benchmarks/report/assets/report.js", "benchmarks/report/assets/report.css"} <= set(names)
    assert not [name for name in names if name.startswith("benchmarks/studies/")]


def test_noise_sources_measures_each_conditions_aa_spread(tmp_path, mnist_data_dir):
    done = study("noise_sources", str(mnist_data_dir), str(tmp_path), "--rounds", "2", "--epochs", "2",
                 "--train-limit", "320", "--control", "malloc-arenas-1")
    assert done.returncode == 0, done.stderr[-2000:]
    table = json.loads((tmp_path / "noise_sources-flax-mlp.json").read_text())
    assert [row["condition"] for row in table["rows"]] == ["baseline", "malloc-arenas-1"]
    for row in table["rows"]:
        assert len(row["a_s"]) == len(row["a_twin_s"]) == 2 and row["low"] <= row["sd_log_ratio"] <= row["high"]
        assert len(row["a_steal_s"]) == 2 and all(seconds >= 0 for seconds in row["a_steal_s"])  # Linux: /proc/stat
        assert all(used["user_s"] > 0 and used["minor_faults"] > 0 for used in row["a_usage"])  # the run's own tree
    assert table["rows"][0]["versus_baseline"] == 1.0


def test_report_scale_times_a_synthetic_history(tmp_path):
    done = study("report_scale", str(tmp_path), "--runs", "6")
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout)
    assert figures["runs"] == 6 and figures["report_s"] > 0 and (tmp_path / "site" / "index.html").is_file()
    assert len(list((tmp_path / "history").glob("run-*/results.json"))) == 6
