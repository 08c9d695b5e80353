"""`mnist-bench run` under faults: a crashing, killed or diverging worker, Ctrl-C, and --resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.harness import parent as harness
from benchmarks.cli import main
from common.results import load_results
from helpers import wait_for_text

CRASHING_WORKER = (sys.executable, str(Path(__file__).parent / "helpers" / "crashing_worker.py"))


@pytest.mark.parametrize("mode, expected", [("kill", "killed by signal SIGKILL (out of memory?)"),
                                            ("raise", "RuntimeError: injected failure in keras-jax")])
def test_crashing_backend_is_recorded_and_others_go_on(tmp_path, monkeypatch, mnist_data_dir, mode, expected):
    monkeypatch.setattr(harness, "WORKER_COMMAND", CRASHING_WORKER)
    monkeypatch.setenv("CRASH_BACKEND", "keras-jax")
    monkeypatch.setenv("CRASH_MODE", mode)
    code = main(["run", "--rounds", "1", "--timing-rounds", "0", "--no-floor", "--backend", "keras-jax,flax", "--epochs", "1", "--train-limit", "1000", "--test-limit", "100",
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
    code = main(["run", "--rounds", "1", "--timing-rounds", "0", "--no-floor", "--backend", "flax", "--epochs", "3", "--train-limit", "1000", "--test-limit", "100",
                 "--data-dir", str(mnist_data_dir), "--out", str(tmp_path / "r"), "--quiet"])
    assert code == 1
    (run,) = load_results(tmp_path / "r").runs
    assert run.status == "failed" and "killed by signal SIGKILL" in run.error
    assert [entry["epoch"] for entry in run.history] == [1] and run.history[0]["val_accuracy"] > 0.2
    assert "failed after 1/3 epochs" in capsys.readouterr().out


def test_divergent_run_is_recorded_as_diverged(tmp_path, mnist_data_dir):
    code = main(["run", "--rounds", "1", "--timing-rounds", "0", "--no-floor", "--backend", "flax", "--lr", "1e4", "--epochs", "3", "--train-limit", "1000",
                 "--test-limit", "100", "--data-dir", str(mnist_data_dir), "--out", str(tmp_path / "r"), "--quiet"])
    assert code == 1
    (run,) = load_results(tmp_path / "r").runs
    assert run.status == "diverged" and "in epoch 1" in run.error and len(run.history) == 1
    assert (tmp_path / "r" / "summary.md").exists()


STRETCHING_WORKER = (sys.executable, str(Path(__file__).parent / "helpers" / "stretching_worker.py"))


def interrupt_while_training(argv: list[str], out: Path, stretch: str, signum: int = signal.SIGINT,
                             env: dict | None = None) -> tuple[int, str]:
    """Run the real CLI in its own process group, wait until `stretch` (BACKEND:SEED), which can only end by
    a signal, has finished an epoch, then send `signum` to the whole group twice (Ctrl-C in a terminal, pressed
    twice; `timeout` and schedulers signal the group too); return the exit code and stderr."""
    launcher = (f"import sys; from benchmarks.harness import parent as harness; harness.WORKER_COMMAND = {STRETCHING_WORKER!r}; "
                f"from benchmarks.cli import main; sys.exit(main({argv!r}))")
    backend, seed = stretch.split(":")
    process = subprocess.Popen([sys.executable, "-c", launcher], start_new_session=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {}), "STRETCH": stretch})
    try:
        wait_for_text(out / "logs" / f"{backend}-seed{seed}.log", f"epoch 1/100000 seed {seed}:", process)
        os.killpg(process.pid, signum)
        os.killpg(process.pid, signum)  # twice: the worker must still save what it trained
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode, stderr


def test_ctrl_c_keeps_completed_runs_and_epochs(tmp_path, mnist_data_dir):
    out = tmp_path / "r"
    argv = ["run", "--rounds", "1", "--timing-rounds", "0", "--no-floor", "--backend", "flax", "--seeds", "0,1", "--epochs", "2", "--train-limit", "1000",
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


def test_sigterm_is_handled_as_ctrl_c(tmp_path, mnist_data_dir):
    # What `timeout`, a cancelled CI job or a batch scheduler sends: the finished backend and the stopped one's
    # epochs kept, the report written, exit 143, and no temporary folder of the harness left behind.
    out, scratch = tmp_path / "r", tmp_path / "tmp"
    scratch.mkdir()
    argv = ["run", "--rounds", "1", "--timing-rounds", "0", "--no-floor", "--backend", "flax,flax-fused", "--epochs", "2", "--train-limit",
            "1000", "--test-limit", "100", "--data-dir", str(mnist_data_dir), "--out", str(out), "--quiet"]
    code, stderr = interrupt_while_training(argv, out, "flax-fused:0", signal.SIGTERM, env={"TMPDIR": str(scratch)})
    assert code == 128 + signal.SIGTERM, stderr[-2000:]
    finished, stopped = load_results(out).runs
    assert (finished.backend, finished.status) == ("flax", "ok")
    assert (stopped.backend, stopped.status, stopped.error) == ("flax-fused", "interrupted", "stopped by SIGTERM")
    assert len(stopped.history) >= 1 and stopped.history[0]["epoch"] == 1
    assert f"flax-fused seed 0 (cpu): interrupted after {len(stopped.history)}/2 epochs" in (out / "summary.md").read_text()
    assert list((out / "plots").glob("*.png")) and "stopped by SIGTERM: completed runs kept" in stderr
    assert not list(scratch.iterdir()) and not list(out.rglob("*.tmp"))


def run_shape(results) -> list:
    """What must match between a resumed and an uninterrupted run: runs, order, statuses, epochs, keys."""
    return [(run.backend, run.seed, run.status, [entry["epoch"] for entry in run.history], sorted(run.timing),
             len(run.step_ms), len(run.test_predictions)) for run in results.runs]


def test_resume_finishes_an_interrupted_run(tmp_path, mnist_data_dir, capsys):
    out = tmp_path / "r"
    argv = ["run", "--rounds", "1", "--timing-rounds", "0", "--no-floor", "--backend", "flax,flax-fused", "--epochs", "2", "--train-limit", "1000", "--test-limit", "100",
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
    # The resumed run is as complete as the one that was never interrupted: same epochs, steps and predictions.
    finished, retrained = (shape[1:] for shape in run_shape(resumed))
    assert retrained == finished and retrained[1] == "ok"
    assert "Resumed:" in (out / "summary.md").read_text()
    # A complete run has nothing left to train.
    assert main(["run", "--resume", str(out), "--quiet"]) == 0
    assert load_results(out).runs == resumed.runs
