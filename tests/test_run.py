"""`mnist-bench run` end to end: argument errors, a small run of the reference backends, its results and plots."""

from __future__ import annotations

import json
import re
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.harness import parent as harness
from backends.registry import BACKENDS, DEFAULT_BACKENDS
from benchmarks.cli import main
from benchmarks.commands.flags import parse_backends, parse_seeds
from benchmarks.measure.environment import usable_cores
from benchmarks.report.plots import first_step_above
from common.results import SCHEMA_VERSION, TIMING_KEYS, load_results

QUICK = ["--epochs", "2", "--train-limit", "2000", "--test-limit", "500", "--step-times"]


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


EXPECTED_PLOTS = {"accuracy.png", "loss.png", "step_times.png", "throughput_time_to_target.png",
                  "test_digits.png", "confusion.png", "loss_divergence.png", "costs.png", "speed_ratios.png"}


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, mnist_data_dir):
    """One small run of all three backends through the real CLI."""
    out = tmp_path_factory.mktemp("runs") / "quick"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(harness, "REMEASURE_AFTER_S", 0.0)  # as a run longer than a minute does
        code = main(["run", "--rounds", "1", "--timing-rounds", "0", *QUICK, "--data-dir", str(mnist_data_dir), "--out", str(out)])
    return code, out


@pytest.mark.parametrize("argv, message", [
    (["run", "--backend", "pytorch"],
     "--backend: unknown backend 'pytorch'; valid: reference, all, keras, flax, keras-jax, flax-fused"),
    (["run", "--epochs", "0"], "--epochs: invalid config: epochs=0; expected an integer >= 1"),
    (["run", "--batch-size", "-3"], "--batch-size: invalid config: batch_size=-3"),
    (["run", "--lr", "-1"], "--lr: invalid config: learning_rate=-1.0"),
    (["run", "--seeds", "a,b"], "--seeds: 'a,b' is not a list of integers"),
    (["run", "--seeds=-1"], "--seeds: '-1': seeds must be integers >= 0"),
    (["run", "--seeds", "0,-2"], "--seeds: '0,-2': seeds must be integers >= 0"),
    (["run", "--seeds", "4-2"], "--seeds: range '4-2' runs backwards"),
    (["run", "--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
    (["run", "--target-accuracy", "2"], "--target-accuracy: invalid config: target_accuracy=2.0; expected a number in (0, 1]"),
    (["run", "--devices", "3"], "--devices: invalid config: devices=3; expected a divisor of --batch-size 32"),
    (["run", "--devices", "2", "--train-limit", "1999"],
     "--devices: invalid config: devices=2; expected a divisor of the epoch's last batch too (31 samples"),
    (["run", "--backend", "tf-fused", "--devices", "2"], "backend 'tf-fused' trains on one device only"),
    (["run", "--devices", str(usable_cores() + 1), "--batch-size", str(4 * (usable_cores() + 1)),
      "--train-limit", str(200 * (usable_cores() + 1))],
     f"--devices {usable_cores() + 1}: this machine has {usable_cores()} usable CPU cores"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["run", "--backend", "flax-ffi", "--device", "gpu"],
     "backend 'flax-ffi' runs on the CPU only (its FFI kernels are CPU code); use --device cpu"),
])
def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys, argv, message):
    assert main([*argv, "--out", str(tmp_path / "out")] if argv[0] == "run" else argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_backend_groups():
    assert parse_backends(None) == parse_backends(["reference"]) == DEFAULT_BACKENDS
    assert parse_backends(["all"]) == tuple(BACKENDS) and len(BACKENDS) == 9
    assert "flax-ffi" not in parse_backends(["all"], device="gpu")  # CPU-only
    assert parse_backends(["flax", "reference,flax-fused"]) == ("flax", "keras", "keras-jax", "flax-fused")
    assert parse_seeds("0-2,5") == (0, 1, 2, 5)


def unusable_out(tmp_path: Path, kind: str) -> Path:
    """An output location that cannot be used, of the given kind."""
    (tmp_path / "place").mkdir()
    a_file = tmp_path / "place" / "a-file"
    a_file.write_text("not a folder")
    return {"file": a_file, "below-a-file": a_file / "run", "uncreatable": Path("/proc/mnist-bench-nope/run")}[kind]


@pytest.mark.parametrize("kind", ["file", "below-a-file", "uncreatable"])
@pytest.mark.parametrize("command", ["run", "compare", "suite"])
def test_unusable_out_exits_2_before_any_work(tmp_path, capsys, mnist_data_dir, quick_run, command, kind):
    out = unusable_out(tmp_path, kind)
    argv = {"run": ["run", "--rounds", "1", "--timing-rounds", "0", "--backend", "flax", "--data-dir", str(mnist_data_dir)],
            "compare": ["compare", str(quick_run[1])], "suite": ["suite", "--quick"]}[command]
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mnist-bench: error: --out: {out}") and err.count("\n") == 1, err
    assert "choose" in err and "Traceback" not in err
    assert [p.name for p in (tmp_path / "place").iterdir()] == ["a-file"]  # nothing trained, nothing written


@pytest.mark.parametrize("precision, pinned", [("highest", True), ("default", False)])
def test_precision_reaches_the_worker_and_is_recorded(tmp_path, mnist_data_dir, precision, pinned):
    out = tmp_path / precision
    assert main(["run", "--rounds", "1", "--timing-rounds", "0", "--no-floor", "--backend", "flax", "--precision", precision, "--epochs", "1", "--train-limit", "400",
                 "--test-limit", "50", "--data-dir", str(mnist_data_dir), "--out", str(out), "--quiet"]) == 0
    results = load_results(out)
    (run,) = results.runs
    assert results.job.precision == precision
    # What the worker process had in force, read back there, and what the parent recorded for it.
    assert ("JAX_DEFAULT_MATMUL_PRECISION" in run.settings) == pinned
    assert run.settings["JAX_PLATFORMS"] == "cpu"
    assert ("JAX_DEFAULT_MATMUL_PRECISION" in results.environment["framework_settings"]["flax"]) == pinned
    # Without --step-times no step is clocked alone: a mean step time per epoch, no distribution.
    assert not run.timing["steps_clocked"] and run.step_ms == [] and run.timing["step_ms_p90"] is None
    assert run.timing["step_ms_median"] == pytest.approx(run.timing["epoch_s_median"] / 10 * 1e3)
    assert f"- Precision: {precision}" in (out / "summary.md").read_text()


def test_gpu_without_gpu_exits_2_before_writing(tmp_path, capsys, mnist_data_dir):
    if os.path.exists("/dev/nvidia0"):
        pytest.skip("this machine has a GPU; the no-GPU error path cannot be exercised here")
    assert main(["run", "--rounds", "1", "--timing-rounds", "0", "--device", "gpu", "--data-dir", str(mnist_data_dir), "--out", str(tmp_path / "o")]) == 2
    assert "--device gpu: no NVIDIA GPU is visible" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_quick_run_writes_valid_results_for_every_backend(quick_run):
    code, out = quick_run
    assert code == 0
    results = load_results(out)
    assert results.schema_version == SCHEMA_VERSION
    assert [run.backend for run in results.runs] == ["keras", "flax", "keras-jax"]
    for run in results.runs:
        assert run.status == "ok" and run.error is None
        assert [entry["epoch"] for entry in run.history] == [1, 2]
        assert set(TIMING_KEYS) <= set(run.timing)
        assert run.timing["steps_clocked"] and run.timing["step_ms_p90"] >= run.timing["step_ms_median"] > 0
        assert run.timing["samples_per_s"] == pytest.approx(1600 / run.timing["epoch_s_median"])
        assert len(run.step_ms) == 50  # epoch 2's 1600 / 32 steps
        assert len(run.step_losses) == 100 and all(0 < loss < 5 for loss in run.step_losses)  # both epochs
        costs = run.costs
        assert all(costs["startup"][phase] > 0 for phase in costs["startup"]), costs
        assert costs["time_to_first_step_s"] == pytest.approx(sum(costs["startup"].values()))
        assert costs["process_s"] > costs["time_to_first_step_s"]  # the parent's clock holds the worker's
        assert costs["peak_rss_mib"] >= costs["rss_end_of_training_mib"] > 50
        assert costs["device_memory"] is None  # CPU: n/a, not 0
        assert len(run.test_predictions) == 500 and sum(map(sum, run.confusion)) == 500
        assert 0.5 < run.test["accuracy"] <= 1.0
    env = results.environment
    assert env["packages"]["jax"] and env["python"] and env["cpu"]
    assert results.job.config.train_limit == 2000 and results.job.seeds == (0,)
    # The limits were measured before and after training, each time in processes until two agreed; the floor ratios
    # use the best of them.
    assert env["roofline"]["floor_processes"] >= harness.FLOOR_MIN_PROCESSES
    assert env["roofline"]["measurements"] >= 2 * harness.FLOOR_MIN_PROCESSES
    step_floor = env["roofline"]["step_floor"]["step_floor_s"]
    assert all(run.timing["step_floor_epoch_s"] == pytest.approx(1600 // 32 * step_floor) for run in results.runs)


def test_best_roofline_keeps_the_most_demanding_limits():
    def limits(peak, bandwidth, floor_s):
        return {"device": "cpu", "gemm_peak_gflops": peak, "bandwidth_gb_s": bandwidth,
                "step_floor": {"batch_size": 32, "step_floor_s": floor_s}}

    best = harness.best_roofline(limits(150.0, 6.0, 4e-4), limits(170.0, 5.0, 3e-4))
    assert (best["gemm_peak_gflops"], best["bandwidth_gb_s"], best["step_floor"]["step_floor_s"]) == (170.0, 6.0, 3e-4)
    assert best["measurements"] == 2
    assert harness.best_roofline(limits(1.0, 1.0, 1.0), None)["gemm_peak_gflops"] == 1.0


def test_backends_agree_in_the_quick_run(quick_run):
    runs = load_results(quick_run[1]).runs
    first_epoch = [run.history[0]["loss"] for run in runs]
    assert max(first_epoch) - min(first_epoch) < 1e-3 * first_epoch[0]
    # Step by step too: the saved per-step losses of every backend agree over the first 20 steps.
    first_steps = np.array([run.step_losses[:20] for run in runs])
    assert np.abs(first_steps - first_steps[0]).max() < 1e-4 * first_steps.max()


def test_first_step_above_marks_where_trajectories_part():
    assert first_step_above(np.array([0.0, 1e-6, 2e-3, 1e-4, 5e-3])) == 3
    assert first_step_above(np.array([0.0, 1e-6])) is None


def test_quick_run_plots_and_summary(quick_run):
    out = quick_run[1]
    plots = {path.name: path for path in (out / "plots").iterdir()}
    assert set(plots) == EXPECTED_PLOTS
    for path in plots.values():
        width, height = png_size(path)
        assert width >= 500 and height >= 300 and path.stat().st_size > 10_000
    summary = (out / "summary.md").read_text()
    assert "| keras · cpu | ok |" in summary and "## Environment" in summary
    for name in EXPECTED_PLOTS:
        assert f"(plots/{name})" in summary
    assert not [p for p in out.rglob("*.tmp")]


def test_existing_run_folder_is_never_overwritten(quick_run, capsys, mnist_data_dir):
    before = (quick_run[1] / "results.json").read_bytes()
    assert main(["run", "--rounds", "1", "--timing-rounds", "0", "--backend", "flax", "--data-dir", str(mnist_data_dir), "--out", str(quick_run[1])]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (quick_run[1] / "results.json").read_bytes() == before


def test_floor_ratio_is_not_shown_for_degenerate_epochs(tmp_path, quick_run, mnist_data_dir, capsys):
    out = tmp_path / "tiny"
    assert main(["run", "--rounds", "1", "--timing-rounds", "0", "--backend", "flax", "--epochs", "2", "--train-limit", "40", "--test-limit", "20",
                 "--data-dir", str(mnist_data_dir), "--out", str(out), "--quiet"]) == 0
    (run,) = load_results(out).runs
    assert run.timing["train_samples"] == 32 and run.timing["floor_epoch_s"] > 0
    assert run.timing["floor_ratio"] is None  # one batch per epoch: a ratio would measure overhead
    assert run.timing["step_floor_epoch_s"] > 0 and run.timing["step_floor_ratio"] is None
    table = capsys.readouterr().out
    assert "'—': no ratio for epochs of fewer than 10 full batches" in table
    for run in load_results(quick_run[1]).runs:
        assert run.timing["floor_ratio"] > 1
        # The step floor: 50 steps of the batch-32 GEMMs + Adam traffic, as NumPy's BLAS runs them.
        assert run.timing["step_floor_epoch_s"] > 0 and run.timing["step_floor_ratio"] > 0


def test_vmapped_seeds_run_matches_separate_runs(tmp_path, mnist_data_dir):
    code = main(["run", "--rounds", "1", "--timing-rounds", "0", "--no-floor", "--backend", "flax-vmap,flax-fused", "--seeds", "0,1", "--epochs", "2", "--train-limit", "1500",
                 "--test-limit", "200", "--data-dir", str(mnist_data_dir), "--out", str(tmp_path / "r"), "--quiet"])
    assert code == 0
    runs = load_results(tmp_path / "r").runs
    # Seed by seed, backends side by side; the multi-seed backend trains both seeds in its first child.
    assert [(run.backend, run.seed) for run in runs] == [("flax-vmap", 0), ("flax-vmap", 1), ("flax-fused", 0),
                                                        ("flax-fused", 1)]
    by_key = {(run.backend, run.seed): run for run in runs}
    for seed in (0, 1):
        together, alone = by_key["flax-vmap", seed], by_key["flax-fused", seed]
        assert together.timing["seeds_in_program"] == 2 and alone.timing["seeds_in_program"] == 1
        for a, b in zip(together.history, alone.history):
            assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
            assert a["val_accuracy"] == pytest.approx(b["val_accuracy"], abs=1 / 300)
        assert together.test["accuracy"] == pytest.approx(alone.test["accuracy"], abs=1 / 200)
    assert by_key["flax-vmap", 0].history[0]["loss"] != by_key["flax-vmap", 1].history[0]["loss"]
    assert (tmp_path / "r" / "logs" / "flax-vmap-seed0-1.log").exists()


PROFILE_READER = """
import json, sys
from pathlib import Path
import jax
files = sorted(Path(sys.argv[1]).rglob("*.xplane.pb"))
data = jax.profiler.ProfileData.from_file(str(files[0]))
events = {plane.name: sum(1 for line in plane.lines for _ in line.events) for plane in data.planes}
print(json.dumps({"files": [str(f) for f in files], "events": events,
                  "perfetto": [str(f) for f in Path(sys.argv[1]).rglob("*.trace.json.gz")]}))
"""


def test_profile_writes_traces_the_profilers_reader_loads(tmp_path, mnist_data_dir, capsys):
    out = tmp_path / "profiled"
    assert main(["run", "--rounds", "1", "--timing-rounds", "0", "--no-floor", "--backend", "flax,keras", "--profile", "--epochs", "2", "--train-limit", "1000",
                 "--test-limit", "100", "--data-dir", str(mnist_data_dir), "--out", str(out), "--quiet"]) == 0
    table = " ".join(capsys.readouterr().out.split())  # a cell may wrap inside its column
    assert "ok (profiled)" in table and "— (profiled)" in table  # marked, and left out of speed comparisons
    for run in load_results(out).runs:
        assert run.timing["profiled_epoch"] == 2
        trace_dir = out / "profiles" / f"{run.backend}-seed0"
        assert run.costs["profile_dir"] == str(trace_dir)
        # Read back with the profiler's own XSpace reader (the format TensorBoard's profile plugin loads).
        read = subprocess.run([sys.executable, "-c", PROFILE_READER, str(trace_dir)], capture_output=True,
                              text=True, timeout=120, env={**os.environ, "JAX_PLATFORMS": "cpu"})
        assert read.returncode == 0, read.stderr[-2000:]
        found = json.loads(read.stdout)
        assert len(found["files"]) == 1 and Path(found["files"][0]).stat().st_size > 1000
        assert sum(found["events"].values()) > 100, found["events"]  # the traced steps' ops, not an empty shell
        if run.backend == "flax":
            assert found["perfetto"]  # JAX also writes a Perfetto trace
            assert (trace_dir / "program.hlo.txt").read_text().startswith("HloModule")  # what each traced op is
        assert run.costs["profile_steps"] >= 10
    # The per-op breakdown of both traces, side by side: the MLP's time is GEMMs, activations and the update.
    assert main(["breakdown", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = {line.split("  ")[0]: line for line in printed.splitlines()}
    assert "flax s0 r0" in rows["category"] and "keras s0 r0" in rows["category"]
    for name in ("GEMM forward", "GEMM backward", "optimizer update", "between ops"):
        assert name in rows
    assert not re.search(r"GEMM backward +0\.000", rows["GEMM backward"])  # both backends' backward GEMMs found
    assert (out / "plots" / "breakdown.png").stat().st_size > 1000
    assert "### Where the step's time goes" in (out / "summary.md").read_text()
    assert main(["run", "--rounds", "1", "--timing-rounds", "0", "--profile", "--epochs", "1", "--out", str(tmp_path / "x")]) == 2
    assert "--profile: invalid config: profile=True; expected --epochs >= 2" in capsys.readouterr().err
