"""`mnist-bench` end to end: argument errors, small runs of every backend, failures, plots, compare."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
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

QUICK = ["--epochs", "2", "--train-limit", "2000", "--test-limit", "500"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EXPECTED_PLOTS = {"accuracy.png", "loss.png", "step_times.png", "throughput_time_to_target.png",
                  "test_digits.png", "confusion.png", "loss_divergence.png", "costs.png"}
CRASHING_WORKER = (sys.executable, str(Path(__file__).parent / "helpers" / "crashing_worker.py"))


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
        code = main(["run", *QUICK, "--data-dir", str(mnist_data_dir), "--out", str(out)])
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
    argv = {"run": ["run", "--backend", "flax", "--data-dir", str(mnist_data_dir)],
            "compare": ["compare", str(quick_run[1])], "suite": ["suite", "--quick"]}[command]
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mnist-bench: error: --out: {out}") and err.count("\n") == 1, err
    assert "choose" in err and "Traceback" not in err
    assert [p.name for p in (tmp_path / "place").iterdir()] == ["a-file"]  # nothing trained, nothing written


@pytest.mark.parametrize("precision, pinned", [("highest", True), ("default", False)])
def test_precision_reaches_the_worker_and_is_recorded(tmp_path, mnist_data_dir, precision, pinned):
    out = tmp_path / precision
    assert main(["run", "--backend", "flax", "--precision", precision, "--epochs", "1", "--train-limit", "400",
                 "--test-limit", "50", "--data-dir", str(mnist_data_dir), "--out", str(out), "--quiet"]) == 0
    results = load_results(out)
    (run,) = results.runs
    assert results.job.precision == precision
    # What the worker process had in force, read back there, and what the parent recorded for it.
    assert ("JAX_DEFAULT_MATMUL_PRECISION" in run.settings) == pinned
    assert run.settings["JAX_PLATFORMS"] == "cpu"
    assert ("JAX_DEFAULT_MATMUL_PRECISION" in results.environment["framework_settings"]["flax"]) == pinned
    assert f"- Precision: {precision}" in (out / "summary.md").read_text()


def test_gpu_without_gpu_exits_2_before_writing(tmp_path, capsys, mnist_data_dir):
    if os.path.exists("/dev/nvidia0"):
        pytest.skip("this machine has a GPU; the no-GPU error path cannot be exercised here")
    assert main(["run", "--device", "gpu", "--data-dir", str(mnist_data_dir), "--out", str(tmp_path / "o")]) == 2
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
        assert run.timing["step_ms_p90"] >= run.timing["step_ms_median"] > 0
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
    # The limits were measured before and after training; the floor ratios use the best of the two.
    assert env["roofline"]["measurements"] == 2
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


def test_show_prints_the_table(quick_run, capsys):
    assert main(["show", str(quick_run[1])]) == 0
    out = capsys.readouterr().out
    assert "flax · cpu" in out and "keras-jax · cpu" in out and "speed vs keras" in out


def test_show_into_a_closed_pipe_stops_quietly(quick_run):
    # `mnist-bench show RUN | head -1`: the reader is gone before anything is written (its end closed first).
    reader, writer = os.pipe()
    os.close(reader)
    try:
        shown = subprocess.run([sys.executable, "-m", "benchmarks.cli", "show", str(quick_run[1])], stdout=writer,
                               stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(writer)
    assert shown.returncode == 141 and shown.stderr == ""


def test_compare_two_runs_labels_machines(quick_run, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    data = json.loads((quick_run[1] / "results.json").read_text())
    data["environment"]["hostname"] = "gpu-box"
    for run in data["runs"]:
        run["device"] = "gpu"
    (other / "results.json").write_text(json.dumps(data))
    assert main(["compare", str(quick_run[1]), str(other), "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert "flax · gpu · gpu-box" in out and "flax · cpu · " in out
    summary = (tmp_path / "cmp" / "summary.md").read_text()
    assert "gpu-box" in summary and (tmp_path / "cmp" / "plots" / "confusion.png").exists()


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"schema_version": 99, "created": "", "environment": {}, "config": {}, "runs": []}', "newer than"),
    ('{"schema_version": 1, "created": "", "environment": {}, "config": {}, "runs": [{"backend": "x"}]}',
     "runs[0] lacks 'seed'"),
])
def test_compare_rejects_bad_results_with_exit_2(tmp_path, capsys, content, message):
    (tmp_path / "results.json").write_text(content)
    assert main(["compare", str(tmp_path), "--out", str(tmp_path / "cmp")]) == 2
    assert message in capsys.readouterr().err
    assert main(["show", str(tmp_path / "missing")]) == 2


def test_existing_run_folder_is_never_overwritten(quick_run, capsys, mnist_data_dir):
    before = (quick_run[1] / "results.json").read_bytes()
    assert main(["run", "--backend", "flax", "--data-dir", str(mnist_data_dir), "--out", str(quick_run[1])]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (quick_run[1] / "results.json").read_bytes() == before


@pytest.mark.parametrize("mode, expected", [("kill", "killed by signal SIGKILL (out of memory?)"),
                                            ("raise", "RuntimeError: injected failure in keras-jax")])
def test_crashing_backend_is_recorded_and_others_go_on(tmp_path, monkeypatch, mnist_data_dir, mode, expected):
    monkeypatch.setattr(harness, "WORKER_COMMAND", CRASHING_WORKER)
    monkeypatch.setenv("CRASH_BACKEND", "keras-jax")
    monkeypatch.setenv("CRASH_MODE", mode)
    code = main(["run", "--backend", "keras-jax,flax", "--epochs", "1", "--train-limit", "1000", "--test-limit", "100",
                 "--data-dir", str(mnist_data_dir), "--out", str(tmp_path / "r"), "--quiet"])
    assert code == 1
    crashed, survivor = load_results(tmp_path / "r").runs
    assert (crashed.backend, crashed.status) == ("keras-jax", "failed") and expected in crashed.error
    assert (survivor.backend, survivor.status) == ("flax", "ok") and survivor.test["accuracy"] > 0.2  # chance is 0.1


def test_a_worker_killed_after_an_epoch_keeps_that_epoch(tmp_path, monkeypatch, mnist_data_dir, capsys):
    # The worker dies before it can write its result; the epochs it announced are kept by the parent.
    monkeypatch.setattr(harness, "WORKER_COMMAND", CRASHING_WORKER)
    monkeypatch.setenv("CRASH_BACKEND", "flax")
    monkeypatch.setenv("CRASH_MODE", "kill-after-epoch")
    code = main(["run", "--backend", "flax", "--epochs", "3", "--train-limit", "1000", "--test-limit", "100",
                 "--data-dir", str(mnist_data_dir), "--out", str(tmp_path / "r"), "--quiet"])
    assert code == 1
    (run,) = load_results(tmp_path / "r").runs
    assert run.status == "failed" and "killed by signal SIGKILL" in run.error
    assert [entry["epoch"] for entry in run.history] == [1] and run.history[0]["val_accuracy"] > 0.2
    assert "failed after 1/3 epochs" in capsys.readouterr().out


def test_divergent_run_is_recorded_as_diverged(tmp_path, mnist_data_dir):
    code = main(["run", "--backend", "flax", "--lr", "1e4", "--epochs", "3", "--train-limit", "1000",
                 "--test-limit", "100", "--data-dir", str(mnist_data_dir), "--out", str(tmp_path / "r"), "--quiet"])
    assert code == 1
    (run,) = load_results(tmp_path / "r").runs
    assert run.status == "diverged" and "in epoch 1" in run.error and len(run.history) == 1
    assert (tmp_path / "r" / "summary.md").exists()


def wait_for_text(path: Path, text: str, process: subprocess.Popen) -> None:
    """Block until `path` contains `text` (evidence, not a guess at how long it takes); fail if the process ends first."""
    while process.poll() is None:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        time.sleep(0.05)
    raise AssertionError(f"process exited with {process.returncode} before {path.name} showed {text!r}: "
                         f"{process.stderr.read()[-2000:]}")


STRETCHING_WORKER = (sys.executable, str(Path(__file__).parent / "helpers" / "stretching_worker.py"))


def interrupt_while_training(argv: list[str], out: Path, stretch: str) -> tuple[int, str]:
    """Run the real CLI in its own process group, wait until `stretch` (BACKEND:SEED), which can only end by
    Ctrl-C, has finished an epoch, then press Ctrl-C; return the exit code and stderr."""
    launcher = (f"import sys; from benchmarks.harness import parent as harness; harness.WORKER_COMMAND = {STRETCHING_WORKER!r}; "
                f"from benchmarks.cli import main; sys.exit(main({argv!r}))")
    backend, seed = stretch.split(":")
    process = subprocess.Popen([sys.executable, "-c", launcher], start_new_session=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**os.environ, "STRETCH": stretch})
    try:
        wait_for_text(out / "logs" / f"{backend}-seed{seed}.log", f"epoch 1/100000 seed {seed}:", process)
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
        os.killpg(process.pid, signal.SIGINT)  # pressed twice: the worker must still save what it trained
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode, stderr


def test_ctrl_c_keeps_completed_runs_and_epochs(tmp_path, mnist_data_dir):
    out = tmp_path / "r"
    argv = ["run", "--backend", "flax", "--seeds", "0,1", "--epochs", "2", "--train-limit", "1000",
            "--test-limit", "100", "--data-dir", str(mnist_data_dir), "--out", str(out), "--quiet"]
    code, stderr = interrupt_while_training(argv, out, "flax:1")
    assert code == 130, stderr[-2000:]
    runs = load_results(out).runs
    assert [(run.seed, run.status) for run in runs] == [(0, "ok"), (1, "interrupted")]
    assert "completed runs kept" in stderr and "--resume" in stderr and not list(out.rglob("*.tmp"))
    # The interrupted run keeps the epochs it finished, with their timings, and the report says how far it got.
    interrupted = runs[1]
    assert len(interrupted.history) >= 1 and interrupted.history[0]["epoch"] == 1
    assert interrupted.timing["warmup_epoch_s"] > 0 and interrupted.test is None
    assert f"flax seed 1 (cpu): interrupted after {len(interrupted.history)}/2 epochs" in (out / "summary.md").read_text()


def run_shape(results) -> list:
    """What must match between a resumed and an uninterrupted run: runs, order, statuses, epochs, keys."""
    return [(run.backend, run.seed, run.status, [entry["epoch"] for entry in run.history], sorted(run.timing),
             len(run.step_ms), len(run.test_predictions)) for run in results.runs]


def test_resume_finishes_an_interrupted_run(tmp_path, mnist_data_dir, capsys):
    out = tmp_path / "r"
    argv = ["run", "--backend", "flax,flax-fused", "--epochs", "2", "--train-limit", "1000", "--test-limit", "100",
            "--data-dir", str(mnist_data_dir), "--out", str(out), "--quiet"]
    code, stderr = interrupt_while_training(argv, out, "flax-fused:0")
    assert code == 130, stderr[-2000:]
    before = load_results(out)
    assert [(run.backend, run.status) for run in before.runs] == [("flax", "ok"), ("flax-fused", "interrupted")]

    # Flags that contradict the saved run are refused before anything runs.
    assert main(["run", "--resume", str(out), "--epochs", "5"]) == 2
    assert "--epochs: 5 contradicts the run being resumed, which has epochs=2" in capsys.readouterr().err
    assert main(["run", "--resume", str(out), "--out", str(tmp_path / "elsewhere")]) == 2
    assert load_results(out).runs[1].status == "interrupted"

    assert main(["run", "--resume", str(out), "--epochs", "2", "--quiet"]) == 0  # agreeing flags are fine
    resumed = load_results(out)
    assert resumed.runs[0] == before.runs[0]  # the ok run is kept as it was, not retrained
    assert resumed.created == before.created and len(resumed.environment["resumed"]) == 1
    fresh_out = tmp_path / "fresh"
    assert main([*argv[:-3], "--out", str(fresh_out), "--quiet"]) == 0
    assert run_shape(resumed) == run_shape(load_results(fresh_out))
    assert "Resumed:" in (out / "summary.md").read_text()
    # A complete run has nothing left to train.
    assert main(["run", "--resume", str(out), "--quiet"]) == 0
    assert load_results(out).runs == resumed.runs


SCHEMA_1_RUN = Path(__file__).parent / "data" / "results-schema1.json"  # written by mnist-bench at d0090bd


def test_schema_1_results_are_still_read(tmp_path, quick_run, capsys):
    old = tmp_path / "old"
    old.mkdir()
    (old / "results.json").write_bytes(SCHEMA_1_RUN.read_bytes())
    results = load_results(old)
    assert results.schema_version == 1
    assert results.job.backends == ("flax", "flax-vmap") and results.job.seeds == (0, 1)
    assert results.job.target_accuracy == 0.97 and results.job.config.epochs == 2
    assert main(["show", str(old)]) == 0
    assert "flax-vmap · cpu ×2 seeds" in capsys.readouterr().out
    assert main(["compare", str(old), str(quick_run[1]), "--out", str(tmp_path / "cmp")]) == 0
    assert (tmp_path / "cmp" / "summary.md").exists()
    assert main(["run", "--resume", str(old)]) == 2
    assert "schema 1" in capsys.readouterr().err


def test_floor_ratio_is_not_shown_for_degenerate_epochs(tmp_path, quick_run, mnist_data_dir, capsys):
    out = tmp_path / "tiny"
    assert main(["run", "--backend", "flax", "--epochs", "2", "--train-limit", "40", "--test-limit", "20",
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
    code = main(["run", "--backend", "flax-vmap,flax-fused", "--seeds", "0,1", "--epochs", "2", "--train-limit", "1500",
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
    assert main(["run", "--backend", "flax,keras", "--profile", "--epochs", "2", "--train-limit", "1000",
                 "--test-limit", "100", "--data-dir", str(mnist_data_dir), "--out", str(out), "--quiet"]) == 0
    table = capsys.readouterr().out
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
    assert main(["run", "--profile", "--epochs", "1", "--out", str(tmp_path / "x")]) == 2
    assert "--profile: invalid config: profile=True; expected --epochs >= 2" in capsys.readouterr().err
