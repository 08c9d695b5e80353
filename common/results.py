"""Typed results, serialized as versioned JSON (`results.json`), validated on read, written atomically."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

from common.errors import MnistBenchError
from common.atomic import write_text_atomic
from common.validation import ConfigError
from common.job import TARGET_ACCURACY, Job

# 2: the run's Job replaces schema 1's `config` (which carried seeds and target_accuracy beside the
# experiment settings); schema 1 files are still read.
SCHEMA_VERSION = 2
RESULTS_FILE = "results.json"
# In a --profile run's trace folder: the traced program's optimized HLO, which the worker saves beside its trace.
PROGRAM_FILE = "program.hlo.txt"
STATUSES = ("ok", "failed", "diverged", "interrupted")
TIMING_KEYS = ("compile_s", "epoch_s_median", "step_ms_median", "step_ms_p90", "samples_per_s", "total_s",
               "time_to_target_s")
HISTORY_KEYS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "epoch_s")


class ResultsError(MnistBenchError, ValueError):
    """A results file is missing, malformed or from a newer mnist-bench; the message says which."""


@dataclasses.dataclass
class RunResult:
    """One (backend, seed, round) training run: what it learned, how fast, and whether it finished."""

    backend: str
    seed: int
    device: str
    status: str = "ok"
    devices: int = 1  # data-parallel devices the run's batches were split over
    error: str | None = None
    device_name: str | None = None
    versions: dict = dataclasses.field(default_factory=dict)
    # Framework settings in force in the worker process (precision, platforms, memory), as it read them.
    settings: dict = dataclasses.field(default_factory=dict)
    # Per epoch: {epoch, loss, accuracy, val_loss, val_accuracy, epoch_s, val_s}; seconds exclude validation.
    history: list = dataclasses.field(default_factory=list)
    test: dict | None = None  # {loss, accuracy}
    timing: dict = dataclasses.field(default_factory=dict)  # TIMING_KEYS plus extras, units in the names
    # Steady-state step times (ms): the distribution behind step_ms_median / p90.
    step_ms: list = dataclasses.field(default_factory=list)
    # Start-up by phase, time to first step, memory: see benchmarks/harness/costs.py.
    costs: dict = dataclasses.field(default_factory=dict)
    # Every training step's loss, in order across epochs (float32 precision): where two backends part ways.
    step_losses: list = dataclasses.field(default_factory=list)
    test_predictions: list = dataclasses.field(default_factory=list)  # predicted class per test image
    confusion: list = dataclasses.field(default_factory=list)  # 10x10, rows true, columns predicted
    label: str | None = None  # how `compare` names the run; filled from the environment when absent
    round: int = 0  # which of the job's interleaved rounds trained it (0-based)
    # A timing round's process (Job.timing_rounds): a warm-up and a timed epoch for the speed ratios, no validation
    # or test; tables take accuracy, curves and costs from the full runs only.
    timing_only: bool = False
    # Which library ran each class of op in the compiled training program (backends/routes.py): {"source",
    # "platform", "xla_flags", "routes": {op class: {library: instructions}}}; {"note"} where none was read.
    kernel_routes: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Results:
    """A benchmark run folder's `results.json`: the job, where it ran, and one RunResult per (backend, seed, round)."""

    created: str
    environment: dict
    job: Job
    runs: list[RunResult]
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> str:
        """Strict JSON (NaN and infinities become null), always in the current schema."""
        data = {"schema_version": SCHEMA_VERSION, "created": self.created, "environment": self.environment,
                "job": self.job.to_dict(), "runs": [dataclasses.asdict(run) for run in self.runs]}
        return json.dumps(_finite_or_null(data), indent=1, allow_nan=False) + "\n"


def save_results(results: Results, run_dir: str | os.PathLike) -> Path:
    """Write `<run_dir>/results.json` atomically and return its path."""
    path = Path(run_dir) / RESULTS_FILE
    write_text_atomic(path, results.to_json())
    return path


def load_results(path: str | os.PathLike) -> Results:
    """Read and validate a results.json (or a run folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    if not path.is_file():
        raise ResultsError(f"{path}: no such results file; pass a run folder made by `mnist-bench run`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ResultsError(f"{path}: not valid JSON ({error}); re-run `mnist-bench run` to regenerate it") from None
    return results_from_dict(data, path)


def results_from_dict(data, where: Path | str = "results") -> Results:
    """Validate parsed JSON (schema 1 or 2) and build typed Results."""
    def fail(problem: str):
        raise ResultsError(f"{where}: {problem}")

    if not isinstance(data, dict):
        fail("expected a JSON object at the top level")
    version = data.get("schema_version")
    if not isinstance(version, int):
        fail("missing integer schema_version")
    if version > SCHEMA_VERSION:
        fail(f"schema_version {version} is newer than this mnist-bench understands ({SCHEMA_VERSION}); "
             "upgrade mnist-bench to read it")
    if version < 1:
        fail(f"unknown schema_version {version}")
    job_key = "config" if version == 1 else "job"
    for key, kind in (("created", str), ("environment", dict), (job_key, dict), ("runs", list)):
        if not isinstance(data.get(key), kind):
            fail(f"field {key!r} must be a {kind.__name__}")
    known = {field.name for field in dataclasses.fields(RunResult)}
    runs = []
    for index, run in enumerate(data["runs"]):
        if not isinstance(run, dict):
            fail(f"runs[{index}] must be an object")
        for key in ("backend", "seed", "device", "status"):
            if key not in run:
                fail(f"runs[{index}] lacks {key!r}")
        if run["status"] not in STATUSES:
            fail(f"runs[{index}].status is {run['status']!r}; expected one of {', '.join(STATUSES)}")
        for entry in run.get("history", []):
            missing = [key for key in HISTORY_KEYS if key not in entry]
            if missing:
                fail(f"runs[{index}].history entry lacks {missing}")
        runs.append(RunResult(**{key: value for key, value in run.items() if key in known}))
    try:
        job = Job.from_dict(data["job"]) if version >= 2 else job_from_schema_1(data["config"], runs)
    except (ConfigError, TypeError) as error:
        fail(f"invalid {job_key}: {error}")
    return Results(created=data["created"], environment=data["environment"], job=job, runs=runs,
                   schema_version=version)


def job_from_schema_1(config: dict, runs: list[RunResult]) -> Job:
    """Schema 1 kept the experiment settings, the seeds and the target in one `config` dict."""
    config = dict(config)
    seeds = config.pop("seeds", None) or sorted({run.seed for run in runs}) or [config.get("seed", 0)]
    target_accuracy = config.pop("target_accuracy", TARGET_ACCURACY)
    config.pop("seed", None)  # the seeds are the job's now
    backends = list(dict.fromkeys(run.backend for run in runs)) or ["unknown"]
    return Job.from_dict({"backends": backends, "config": config, "seeds": seeds,
                          "device": runs[0].device if runs else "cpu", "target_accuracy": target_accuracy})


def _finite_or_null(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_null(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(item) for item in value]
    return value
