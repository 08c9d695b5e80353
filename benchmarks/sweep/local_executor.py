"""The local executor: the trials one after another on this machine."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks.measure.roofline import floor_key
from benchmarks.sweep.grid import Trial
from benchmarks.sweep.index import TRIALS_DIR
from benchmarks.sweep.trial import TrialOutcome, run_trial

OnFinished = Callable[[Trial, TrialOutcome], None]


def run_local(trials: Sequence[Trial], sweep_dir: Path, timeout_s: float, on_finished: OnFinished,
              on_started: Callable[[Trial], None]) -> None:
    """The trials one after another on this machine, each as `run` would train it."""
    floors: dict[tuple, dict | None] = {}
    for trial in trials:
        on_started(trial)
        key = floor_key(trial.job)
        if key not in floors:
            # The machine does not change between trials: measure each floor once.
            from benchmarks.harness.parent import measure_roofline

            floors[key] = measure_roofline(trial.job, sweep_dir)
        on_finished(trial, run_trial(trial.job, sweep_dir / TRIALS_DIR / trial.id, timeout_s, floors[key]))
