"""One trial: `mnist-bench run` of one grid point in its own process, stopped cleanly on timeout or Ctrl-C.

Child usage: python -m benchmarks.sweep.trial TRIAL-JOB.json RUN_DIR
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.harness.children import first_stop_only, guarded, python_module, spawn, stop_exit_status
from common.errors import EXIT_FAILED, EXIT_OK
from common.atomic import write_text_atomic
from common.job import Job
from common.results import RESULTS_FILE, load_results

DEFAULT_TRIAL_TIMEOUT_S = 6 * 3600.0
# A trial asked to stop gets this long to save what it has before it is killed.
STOP_GRACE_S = 60.0
TRIAL_COMMAND = python_module("benchmarks.sweep.trial")  # + TRIAL-JOB.json RUN_DIR


@dataclasses.dataclass
class TrialOutcome:
    """How one trial ended, and on which machine."""

    status: str
    error: str | None
    node: str
    seconds: float


def run_trial(job: Job, out_dir: Path, timeout_s: float, roofline: dict | None = None) -> TrialOutcome:
    """Train `job` into run folder `out_dir` in a child process (resuming the folder's earlier attempt).

    The child runs in its own session: on timeout or Ctrl-C it gets SIGINT (it saves completed epochs,
    as `run` does), then SIGKILL if it has not ended after STOP_GRACE_S. It also gets SIGINT if this
    process dies first (Linux), so a killed executor leaves no trial running.
    """
    started = time.monotonic()
    out_dir.mkdir(parents=True, exist_ok=True)
    job_file = out_dir / "trial-job.json"
    write_text_atomic(job_file, json.dumps({"job": job.to_dict(), "roofline": roofline}))
    (out_dir / "logs").mkdir(exist_ok=True)
    with open(out_dir / "logs" / "trial.log", "a", encoding="utf-8") as log:
        child = spawn(TRIAL_COMMAND, job_file, out_dir, stdout=log, stderr=subprocess.STDOUT,
                      start_new_session=True, preexec_fn=_stop_with_parent)
        timed_out = False
        try:
            child.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            _stop_group(child)
        except KeyboardInterrupt:
            _stop_group(child)
            raise
    job_file.unlink(missing_ok=True)
    seconds = time.monotonic() - started
    status, error = _outcome_of(out_dir, child.returncode)
    if timed_out:
        status, error = "failed", f"timed out after {timeout_s:g} s (--trial-timeout)"
    return TrialOutcome(status, error, socket.gethostname(), seconds)


def _outcome_of(out_dir: Path, returncode: int) -> tuple[str, str | None]:
    """The trial's status from its saved runs, or from its exit when it saved none."""
    try:
        runs = load_results(out_dir).runs
    except Exception:  # noqa: BLE001 - no results: the trial failed before training; say how it exited
        runs = []
    if runs and all(run.status == "ok" for run in runs):
        return "ok", None
    for run in runs:
        if run.status != "ok":
            return run.status, run.error
    log = (out_dir / "logs" / "trial.log").read_text(encoding="utf-8", errors="replace").strip().splitlines()
    reason = next((line for line in reversed(log) if line.startswith("mnist-bench: error:")), log[-1] if log else "")
    return "failed", f"trial exited with code {returncode}: {reason.removeprefix('mnist-bench: error: ')}"


def _stop_with_parent() -> None:
    """In the child, before exec: SIGINT deliverable, and sent by the kernel when the parent dies (Linux only).

    A Ray worker blocks SIGINT in the thread that runs tasks, and a blocked signal stays blocked across
    fork and exec: unblocked here, or neither this nor a stop request would ever reach the trial.
    """
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGINT)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _stop_group(child: subprocess.Popen) -> None:
    """SIGINT to the trial's process group, then SIGKILL if it outlives the grace period."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGINT)
    try:
        child.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()


def trial_main(job_file: str, out_dir: str) -> int:
    """The trial process: `run` (or, for a folder with an earlier attempt, `run --resume`) without the report."""
    from benchmarks.harness import parent as harness

    spec = json.loads(Path(job_file).read_text(encoding="utf-8"))

    def run() -> int:
        with first_stop_only():
            try:
                if (Path(out_dir) / RESULTS_FILE).is_file():
                    results, _ = harness.resume_benchmark(Path(out_dir), quiet=True)
                else:
                    results, _ = harness.run_benchmark(Job.from_dict(spec["job"]), Path(out_dir), quiet=True,
                                                       roofline=spec.get("roofline"))
            except harness.Interrupted as interrupted:
                return stop_exit_status(interrupted)  # the completed epochs are saved in out_dir
        return EXIT_OK if all(run.status == "ok" for run in results.runs) else EXIT_FAILED

    return guarded(run)


if __name__ == "__main__":
    sys.exit(trial_main(*sys.argv[1:]))
