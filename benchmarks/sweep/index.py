"""sweep.json, the sweep's index: the grid, the executor and every trial's state, rewritten atomically."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
from pathlib import Path

from benchmarks.sweep.errors import SweepError
from benchmarks.sweep.grid import Grid
from common.atomic import write_text_atomic
from common.validation import ConfigError
from common.results import RESULTS_FILE, Results, load_results

SWEEP_FILE = "sweep.json"
SWEEP_SCHEMA_VERSION = 1
TRIALS_DIR = "trials"


@dataclasses.dataclass
class TrialRecord:
    """What sweep.json says about one trial."""

    id: str
    job: dict
    status: str = "pending"
    error: str | None = None
    node: str | None = None
    attempts: int = 0
    started: str | None = None
    seconds: float | None = None


@dataclasses.dataclass
class SweepIndex:
    """sweep.json: the grid, the executor and every trial's state."""

    created: str
    executor: str
    grid: Grid
    trials: list[TrialRecord]

    def save(self, sweep_dir: Path) -> None:
        """Rewrite sweep.json atomically."""
        data = {"schema_version": SWEEP_SCHEMA_VERSION, "created": self.created, "executor": self.executor,
                "grid": self.grid.to_dict(), "trials": [dataclasses.asdict(t) for t in self.trials]}
        write_text_atomic(sweep_dir / SWEEP_FILE, json.dumps(data, indent=1) + "\n")

    def record(self, trial_id: str) -> TrialRecord:
        """The record of `trial_id`."""
        return next(record for record in self.trials if record.id == trial_id)


def is_sweep(path: str | os.PathLike) -> bool:
    """Whether `path` is a sweep folder (it holds a sweep.json)."""
    return (Path(path) / SWEEP_FILE).is_file()


def load_sweep(sweep_dir: str | os.PathLike) -> SweepIndex:
    """Read and validate a sweep folder's sweep.json."""
    path = Path(sweep_dir) / SWEEP_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("schema_version") != SWEEP_SCHEMA_VERSION:
            raise ValueError(f"schema_version {data.get('schema_version')!r}, expected {SWEEP_SCHEMA_VERSION}")
        return SweepIndex(data["created"], data["executor"], Grid.from_dict(data["grid"]),
                          [TrialRecord(**record) for record in data["trials"]])
    except (OSError, ValueError, KeyError, TypeError, ConfigError) as error:
        raise SweepError(f"{path}: not a readable sweep index ({error}); pass a folder made by `mnist-bench sweep`") \
            from None


def load_trials(sweep_dir: str | os.PathLike) -> tuple[SweepIndex, dict[str, Results]]:
    """The index and every trial's saved results by trial id (trials that never wrote one are left out)."""
    index = load_sweep(sweep_dir)
    folders = {record.id: Path(sweep_dir) / TRIALS_DIR / record.id for record in index.trials}
    return index, {trial: load_results(folder) for trial, folder in folders.items()
                   if (folder / RESULTS_FILE).is_file()}


def sweep_results(sweep_dir: str | os.PathLike) -> list[Results]:
    """Every trial's saved results (trials that never wrote one are skipped)."""
    return list(load_trials(sweep_dir)[1].values())


def utc_now() -> str:
    """Now, in UTC, to the second: when a sweep or a trial started."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
