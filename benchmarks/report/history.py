"""Saved results found under folders, grouped into series over time, with their change points and regressions.

What `mnist-bench report` draws and `mnist-bench history` prints and gates on. A series is one configuration on one
machine (model, backend, device, device count, batch size, precision, training set size, machine); each run contributes one point, the
median of its processes' steady epoch times with a 95% bootstrap CI. Change points come from measure/changepoints.py.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from benchmarks.measure.changepoints import ChangePoint, change_points
from benchmarks.measure.stats import median_interval
from benchmarks.report.tables import RunGroup, group_runs, recorded_threshold, steady_epoch_seconds
from common.atomic import write_text_atomic
from common.results import RESULTS_FILE, Results, ResultsError, load_results

VERIFY_FILE, SWEEP_FILE, SUITE_FILE = "verify.json", "sweep.json", "benchmarks.json"
ACKNOWLEDGED_FILE = "acknowledged-regressions.json"


class NothingToReport(ValueError):
    """No results, verify, sweep or suite file under the given paths."""


@dataclasses.dataclass
class Found:
    """Everything a search of the given paths found, each with a short id (its path relative to their common root)."""

    runs: list[tuple[str, Path, Results]] = dataclasses.field(default_factory=list)
    verifies: list[tuple[str, Path, dict]] = dataclasses.field(default_factory=list)
    sweeps: list[tuple[str, Path, dict]] = dataclasses.field(default_factory=list)
    suites: list[tuple[str, Path, dict]] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)  # one warning per damaged file

    def __bool__(self) -> bool:
        return bool(self.runs or self.verifies or self.sweeps or self.suites)


def _files(paths: Iterable[str | Path]) -> list[Path]:
    """Every results, verify, sweep and suite file at or under the paths, each once, in path order."""
    names = {RESULTS_FILE, VERIFY_FILE, SWEEP_FILE, SUITE_FILE}
    found: dict[Path, None] = {}
    for path in map(Path, paths):
        if path.is_file():
            found[path.resolve()] = None
        elif path.is_dir():
            for name in sorted(names):
                for file in sorted(path.rglob(name)):
                    if file.is_file():
                        found[file.resolve()] = None
    return list(found)


def _common_root(files: Sequence[Path]) -> Path:
    """The folder ids are relative to: the files' common folder, or its parent when they share one folder."""
    parents = {file.parent for file in files}
    root = Path(os.path.commonpath([str(parent) for parent in parents]))
    return root.parent if root in parents else root


def find_reports(paths: Sequence[str | Path]) -> Found:
    """Search the paths (files or folders, recursively) for runs, verifications, sweeps and suites; a damaged file is
    skipped with a warning naming it. Raises NothingToReport when nothing readable is there."""
    files = _files(paths)
    found = Found()
    if not files:
        raise NothingToReport(f"nothing to report in {', '.join(map(str, paths))}: no {RESULTS_FILE}, {VERIFY_FILE}, "
                              f"{SWEEP_FILE} or {SUITE_FILE} there; pass folders written by mnist-bench run, verify, "
                              "sweep or suite")
    root = _common_root(files)
    for file in files:
        ident = file.parent.relative_to(root).as_posix()
        try:
            if file.name == RESULTS_FILE:
                found.runs.append((ident, file.parent, load_results(file)))
                continue
            data = json.loads(file.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object at the top level")
            if file.name == VERIFY_FILE and isinstance(data.get("backends"), dict):
                found.verifies.append((ident, file.parent, data))
            elif file.name == SWEEP_FILE and isinstance(data.get("trials"), list):
                found.sweeps.append((ident, file.parent, data))
            elif file.name == SUITE_FILE and isinstance(data.get("benchmarks"), list):
                found.suites.append((ident, file.parent, data))
            else:
                raise ValueError(f"not a {file.name} written by mnist-bench")
        except (ResultsError, OSError, UnicodeDecodeError, ValueError) as error:
            found.skipped.append(f"skipped {file}: {str(error).removeprefix(f'{file}: ')}")
    if not found:
        raise NothingToReport(f"nothing to report in {', '.join(map(str, paths))}: every file found was damaged ("
                              + "; ".join(found.skipped) + ")")
    found.runs.sort(key=lambda entry: (entry[2].created, entry[0]))
    return found


@dataclasses.dataclass(frozen=True)
class Point:
    """One run's figure in a series: the median steady epoch time of its processes and its 95% CI."""

    run: str
    created: str
    epoch_s: float
    low: float | None  # None: one process, no interval
    high: float | None
    processes: int
    versions: dict  # the framework versions the run used


@dataclasses.dataclass
class Series:
    """One configuration on one machine over time, its steps and the noise threshold its runs were judged with."""

    key: str
    backend: str
    labels: dict  # model, backend, device, devices, batch size, precision, machine
    points: list[Point]
    threshold: float
    changes: list[ChangePoint] = dataclasses.field(default_factory=list)


def series_key(results: Results, group: RunGroup) -> tuple[str, dict]:
    """'mlp/flax/cpu/x1/b32/highest/full/HOST' and its parts: what makes two runs' figures comparable over time (an
    epoch of a --train-limit run is a different amount of work)."""
    config = results.job.config
    labels = {"model": config.model, "backend": group.backend, "device": group.device, "devices": group.devices,
              "batch": config.batch_size, "precision": results.job.precision,
              "data": f"limit{config.train_limit}" if config.train_limit else "full", "machine": group.machine}
    return "/".join([labels["model"], labels["backend"], labels["device"], f"x{labels['devices']}",
                     f"b{labels['batch']}", labels["precision"], labels["data"], labels["machine"]]), labels


def group_point(ident: str, results: Results, group: RunGroup) -> Point | None:
    """A run's point for one group: None when none of its processes finished with a steady epoch time."""
    times = [float(np.median(steady)) for run in group.ok_timed_runs
             if not run.timing.get("profiled_epoch") and (steady := steady_epoch_seconds(run))]
    times = [time for time in times if math.isfinite(time) and time > 0]
    if not times:
        return None
    median, low, high = median_interval(times)
    # The versions its worker ran (another stack's, for a BACKEND@STACK row), else the run's environment's.
    packages = (next((run.versions for run in group.ok_timed_runs if run.versions), None)
                or results.environment.get("packages", {}))
    versions = {name: packages[name] for name in framework_packages(group.backend) if packages.get(name)}
    return Point(ident, results.created, median, low, high, len(times), versions)


def framework_packages(backend: str) -> tuple[str, ...]:
    """The packages whose version moves a backend's speed: the x axis of a history by version."""
    if backend.startswith("keras-jax"):
        return ("keras", "jax", "jaxlib")
    if backend.startswith(("keras", "tf")):
        return ("keras", "tensorflow", "tensorflow-cpu")
    return ("flax", "jax", "jaxlib", "optax")


def build_series(runs: Sequence[tuple[str, Path, Results]], min_change: float | None = None) -> list[Series]:
    """Every series the runs make, points oldest first, with their change points (steps larger than the noise
    threshold the runs recorded, or `min_change`)."""
    by_key: dict[str, Series] = {}
    for ident, _, results in sorted(runs, key=lambda entry: (entry[2].created, entry[0])):
        for group in group_runs([results]):
            point = group_point(ident, results, group)
            if point is None:
                continue
            key, labels = series_key(results, group)
            series = by_key.setdefault(key, Series(key, group.backend, labels, [], 0.0))
            series.points.append(point)
            series.threshold = max(series.threshold, recorded_threshold(results))
    for series in by_key.values():
        series.changes = change_points([p.epoch_s for p in series.points],
                                       min_change if min_change is not None else series.threshold)
    return sorted(by_key.values(), key=lambda s: s.key)


@dataclasses.dataclass(frozen=True)
class Regression:
    """The latest point of a series against the level before it: slower by more than the gate allows, CI clear."""

    series: Series
    baseline: float
    latest: Point
    ratio: float  # latest / baseline
    low: float | None  # the latest point's CI over the baseline
    high: float | None


def latest_against_baseline(series: Series) -> Regression | None:
    """The latest point over the level of the points since the last step before it; None with a single point."""
    points = series.points
    if len(points) < 2:
        return None
    start = max([change.index for change in series.changes if change.index <= len(points) - 2], default=0)
    baseline = float(np.median([point.epoch_s for point in points[start:-1]]))
    latest = points[-1]
    scale = lambda value: None if value is None else value / baseline  # noqa: E731
    return Regression(series, baseline, latest, latest.epoch_s / baseline, scale(latest.low), scale(latest.high))


def gate(series_list: Sequence[Series], percent: float, acknowledged: set[tuple[str, str]]) -> list[Regression]:
    """The series whose latest point is slower than its baseline by more than `percent`, its whole CI past that,
    and not acknowledged."""
    failing = []
    for series in series_list:
        regression = latest_against_baseline(series)
        if (regression and regression.low is not None and regression.low > 1 + percent / 100
                and (series.key, regression.latest.run) not in acknowledged):
            failing.append(regression)
    return failing


def load_acknowledged(path: Path) -> set[tuple[str, str]]:
    """(series key, run id) pairs a person has looked at and accepted; an absent file is none."""
    if not path.is_file():
        return set()
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
        return {(entry["series"], entry["run"]) for entry in entries}
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise ValueError(f"{path}: not a list of {{\"series\", \"run\"}} entries ({error}); fix or delete it") from None


def acknowledge(path: Path, series: str, run: str, note: str = "") -> None:
    """Add (series, run) to the acknowledged list, written atomically."""
    entries = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    if not any(entry["series"] == series and entry["run"] == run for entry in entries):
        entries.append({"series": series, "run": run, "note": note})
    write_text_atomic(path, json.dumps(entries, indent=1) + "\n")


def change_rows(series_list: Sequence[Series], acknowledged: set[tuple[str, str]]) -> list[dict]:
    """Every step of every series, newest first: the regressions table (slower steps) and the improvements."""
    rows = []
    for series in series_list:
        for change in series.changes:
            point = series.points[change.index]
            rows.append({"series": series.key, "backend": series.backend, "run": point.run, "created": point.created,
                         "before_s": change.before, "after_s": change.after, "ratio": change.ratio,
                         "p_value": change.p_value, "direction": "slower" if change.ratio > 1 else "faster",
                         "acknowledged": (series.key, point.run) in acknowledged})
    return sorted(rows, key=lambda row: row["created"], reverse=True)


def _interval(point: Point) -> str:
    return "no CI: 1 process" if point.low is None else f"[{point.low:.3f}, {point.high:.3f}]"


def format_history(series_list: Sequence[Series], acknowledged: set[tuple[str, str]]) -> str:
    """The terminal view: per series its points, latest figure and steps."""
    lines = []
    for series in series_list:
        latest = series.points[-1]
        lines.append(f"{series.key}: {len(series.points)} runs, latest {latest.epoch_s:.3f} s/epoch "
                     f"{_interval(latest)} ({latest.run}, {latest.created[:16]})")
        for change in series.changes:
            point = series.points[change.index]
            mark = " (acknowledged)" if (series.key, point.run) in acknowledged else ""
            lines.append(f"  step at {point.run} ({point.created[:16]}): {change.before:.3f} -> {change.after:.3f} s "
                         f"({(change.ratio - 1) * 100:+.1f}%, {'slower' if change.ratio > 1 else 'faster'}, "
                         f"p={change.p_value:.3f}){mark}")
        regression = latest_against_baseline(series)
        if regression:
            ci = ("" if regression.low is None else
                  f" [{(regression.low - 1) * 100:+.1f}%, {(regression.high - 1) * 100:+.1f}%]")
            lines.append(f"  latest vs its level: {(regression.ratio - 1) * 100:+.1f}%{ci}")
    return "\n".join(lines)


def warn(lines: Iterable[str]) -> None:
    """Warnings to stderr, one line each."""
    for line in lines:
        print(f"warning: {line}", file=sys.stderr)
