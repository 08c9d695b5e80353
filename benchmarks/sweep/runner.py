"""`mnist-bench sweep`: a grid of runs, one after another on this machine or spread over a Ray cluster.

A trial is one backend x batch size x seed x device count x learning rate x precision, trained exactly as
`mnist-bench run` trains it: the harness in its own process (`python -m benchmarks.sweep.trial JOB OUT`), which
starts the usual worker process, into the trial's own run folder. The sweep folder holds those run folders
(`trials/<id>/results.json`, the ordinary schema), a `sweep.json` index rewritten atomically as each trial
ends, and the summary table and plots. The local executor needs nothing installed; the Ray executor
(the `cluster` extra) runs each trial as a Ray task on some node, at most `trials_per_node` at once per
node, and ships the trial's files back to this machine.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks.harness.children import stop_reason, stop_signal
from benchmarks.sweep.errors import SweepError, SweepInterrupted
from benchmarks.sweep.grid import Grid, Trial
from benchmarks.sweep.index import SweepIndex, TrialRecord, is_sweep, load_sweep, utc_now
from benchmarks.sweep.local_executor import run_local
from benchmarks.sweep.ray_executor import check_head_answers, import_ray, run_ray
from benchmarks.sweep.trial import DEFAULT_TRIAL_TIMEOUT_S, TrialOutcome
from common.atomic import LOCK_FILE, claim_output_directory

EXECUTORS = ("local", "ray")


def run_sweep(grid: Grid | None, sweep_dir: Path, executor: str = "local", *, resume: bool = False,
              ray_address: str | None = None, trials_per_node: int = 1,
              timeout_s: float = DEFAULT_TRIAL_TIMEOUT_S, quiet: bool = False) -> SweepIndex:
    """Run every trial of `grid` (or, with `resume`, every trial of the saved sweep that is not ok)."""
    if executor not in EXECUTORS:
        raise SweepError(f"--executor {executor!r}; valid: {', '.join(EXECUTORS)}")
    if executor == "ray":
        import_ray()
        check_head_answers(ray_address or os.environ.get("RAY_ADDRESS"))
    if resume:
        claim_output_directory(sweep_dir)  # a sweep another live driver runs is refused here
        index = load_sweep(sweep_dir)
        grid = index.grid
        index.executor = executor
    else:
        if is_sweep(sweep_dir) or (sweep_dir.exists() and any(path.name != LOCK_FILE for path in sweep_dir.iterdir())):
            raise SweepError(f"{sweep_dir} is not empty; choose another --out, or finish a sweep there with --resume")
        index = None
    trials = grid.trials()
    check_trials_can_start(trials)
    from common.mnist import load_mnist

    load_mnist(grid.base.data_dir)  # verify (or download) once, before any trial starts
    if index is None:
        claim_output_directory(sweep_dir)
        index = SweepIndex(utc_now(), executor, grid, [TrialRecord(t.id, t.job.to_dict()) for t in trials])
        index.save(sweep_dir)
    todo = [trial for trial in trials if index.record(trial.id).status != "ok"]
    say = (lambda text: None) if quiet else (lambda text: print(text, file=sys.stderr, flush=True))
    say(f"sweep: {len(todo)} of {len(trials)} trials to run ({executor} executor) -> {sweep_dir}")

    def on_started(trial: Trial) -> None:
        record = index.record(trial.id)
        record.attempts += 1
        record.started = utc_now()
        record.status, record.error = "pending", None  # an earlier attempt's end no longer describes it
        index.save(sweep_dir)  # a driver killed from here on leaves an index that says the trial was started
        say(f"  {trial.id}: started")

    def on_finished(trial: Trial, outcome: TrialOutcome) -> None:
        record = index.record(trial.id)
        record.status, record.error, record.node, record.seconds = (outcome.status, outcome.error, outcome.node,
                                                                    round(outcome.seconds, 1))
        index.save(sweep_dir)
        say(f"  {trial.id}: {outcome.status} on {outcome.node} in {outcome.seconds:.0f} s"
            + (f": {outcome.error}" if outcome.error else ""))

    try:
        if executor == "local":
            run_local(todo, sweep_dir, timeout_s, on_finished, on_started)
        else:
            run_ray(todo, sweep_dir, timeout_s, on_finished, on_started, ray_address, trials_per_node)
    except KeyboardInterrupt as stop:
        for record in index.trials:
            if record.status == "pending" and record.started:
                record.status, record.error = "interrupted", stop_reason(stop)
        index.save(sweep_dir)
        raise SweepInterrupted(sweep_dir, stop_signal(stop)) from None
    return index


def check_trials_can_start(trials: Sequence[Trial]) -> None:
    """What no node could do is refused before anything starts: unknown backends, devices a backend cannot use.

    Whether a node has the devices a trial asks for is for that node to say (this machine, for the local
    executor): such a trial fails with the harness' error and the others go on, with either executor.
    """
    from backends.base import BackendError
    from backends.registry import check_can_run

    for trial in trials:
        try:
            check_can_run(trial.job)
        except BackendError as error:
            raise SweepError(f"trial {trial.id}: {error}") from None
