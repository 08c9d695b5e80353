"""`mnist-bench report`'s site: one offline, interactive page of runs, comparisons, history, sweeps and verifications.

Why plotly: its wheel ships plotly.min.js, so the page works from `file://` with no network; a figure is plain JSON,
which we write from Python without plotly's Python object layer (fast enough for a history of 1,000 runs); it has
error bars, bands, heatmaps, log axes and zoom built in. bokeh also ships its JS, but a bokeh figure is a document of
Python model objects, slower to build in bulk and harder to hand to our own page logic.

The page is index.html, assets/ (plotly.min.js, report.js, report.css, copied from the package) and data.js, which
sets `window.MNIST_BENCH_REPORT` to the data as JSON: loaded by `<script src>`, never fetched, so nothing leaves the
folder. Every string from a results file reaches the page as data, never as markup: report.js writes text with
`textContent` and escapes what it hands plotly (tests/test_report_site.py feeds a hostile results.json).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks.measure.stack import describe_stack
from benchmarks.measure.stats import median_interval
from benchmarks.report.history import (Found, Point, Series, build_series, change_rows, latest_against_baseline,
                                      series_key)
from benchmarks.report.tables import (REFERENCE_BACKEND, RunGroup, group_runs, mean_std_ci, recorded_threshold,
                                      reference_key, repeats_label, route_lines, speed_ratio_between, status_cell,
                                      yardsticks)
from common.atomic import atomic_path, write_text_atomic
from common.workloads import describe_model

ASSETS = Path(__file__).parent / "assets"
PAGE_ASSETS = ("report.js", "report.css")
MAX_CURVE_POINTS = 400  # per plotted line: enough for the eye, small enough for 1,000 runs on one page


def _rounded(values, digits: int = 5) -> list:
    """Floats trimmed for the page (the figures behind them stay in results.json)."""
    array = np.asarray(values, dtype=np.float64)
    return [None if not np.isfinite(v) else float(f"{v:.{digits}g}") for v in array.ravel()]


def _downsampled(values: np.ndarray, limit: int = MAX_CURVE_POINTS) -> tuple[list, list]:
    """(1-based steps, values) thinned to at most `limit` points, evenly spaced."""
    if len(values) <= limit:
        return list(range(1, len(values) + 1)), _rounded(values)
    picks = np.unique(np.linspace(0, len(values) - 1, limit).astype(int))
    return (picks + 1).tolist(), _rounded(values[picks])


def _interval(values) -> dict | None:
    values = [v for v in values if v is not None and np.isfinite(v)]
    if not values:
        return None
    median, low, high = median_interval(values)
    return {"value": median, "low": low, "high": high, "n": len(values)}


def _median(values):
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else None


def _divergence(group: RunGroup, reference: RunGroup | None) -> dict | None:
    """|per-step loss difference| from the reference's run of the same seed (first round), as a running mean."""
    from benchmarks.report.plots import SMOOTHING_STEPS, trailing_mean

    if reference is None or reference is group:
        return None
    ours = next((run for run in group.ok_runs if run.step_losses), None)
    theirs = next((run for run in reference.ok_runs if run.step_losses and ours and run.seed == ours.seed), None)
    if ours is None or theirs is None:
        return None
    length = min(len(ours.step_losses), len(theirs.step_losses))
    differences = np.abs(np.asarray(ours.step_losses[:length], np.float64) - np.asarray(theirs.step_losses[:length]))
    steps, values = _downsampled(np.maximum(trailing_mean(differences, SMOOTHING_STEPS), 1e-12))
    return {"against": reference.label, "steps": steps, "values": values, "seed": ours.seed}


def _group_view(group: RunGroup, reference: RunGroup | None, point: Point | None) -> dict:
    """One backend's figures in a run: verdict, speed, accuracy, curves, epoch times, costs, confusion. `point`: the
    group's point in its history series (its median epoch time and CI), computed once for both views."""
    ok = group.ok_runs
    ratio = speed_ratio_between(reference, group) if reference is not None and reference is not group else None
    epoch = None if point is None else {"value": point.epoch_s, "low": point.low, "high": point.high,
                                        "n": point.processes}
    accuracy = mean_std_ci([run.test["accuracy"] * 100 for run in ok if run.test])
    costs = [run.costs for run in group.runs if run.costs]
    startup_phases = sorted({phase for cost in costs for phase in cost.get("startup", {})})
    return {
        "label": group.label, "backend": group.backend, "device": group.device, "devices": group.devices,
        "repeats": repeats_label(group).strip(), "status": status_cell(group),
        "test_acc": None if accuracy is None else {"value": accuracy[0], "half": accuracy[2], "n": len(ok)},
        "epoch_s": epoch,
        "samples_per_s": _median([run.timing.get("samples_per_s") for run in group.ok_timed_runs]),
        "ratio": ratio.to_dict() if ratio else None,
        "reference": reference.label if reference is not None and reference is not group else None,
        "floor": _interval([run.timing.get("step_floor_ratio") for run in group.ok_timed_runs]),
        "time_to_target_s": [run.timing.get("time_to_target_s") for run in ok],
        "curves": [{"seed": run.seed, "round": run.round,
                    **{key: _rounded([entry.get(key, np.nan) for entry in run.history])
                       for key in ("loss", "val_loss", "accuracy", "val_accuracy")}} for run in ok],
        "epoch_times": [{"round": run.round, "seed": run.seed, "timing": run.timing_only,
                         "times": _rounded([entry.get("epoch_s", np.nan) for entry in run.history], 4)}
                        for run, _ in group.timed_runs if run.status == "ok"],
        # --step-times' clocked steps (the steady epochs'), pooled over the full runs: the step-time box plot.
        "step_ms": _rounded(np.concatenate([np.asarray(run.step_ms, np.float64) for run in ok if run.step_ms])
                            [:: max(1, sum(len(run.step_ms) for run in ok) // MAX_CURVE_POINTS)], 4)
        if any(run.step_ms for run in ok) else [],
        "startup": {phase: _median([cost.get("startup", {}).get(phase) for cost in costs]) for phase in startup_phases},
        "peak_rss_mib": _median([cost.get("peak_rss_mib") for cost in costs]),
        "confusion": next((run.confusion for run in ok if run.confusion), None),
        "divergence": _divergence(group, reference),
        "routes": route_lines([group])[0].split(": ", 1)[1],
    }


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link where the site and the run share a file system (a history of 1,000 runs would otherwise copy
    1,000 digit grids), else a copy; the site stays whole if the run folder is deleted later."""
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def run_view(ident: str, folder: Path, results, assets: Path, points: dict[tuple[str, str], Point]) -> dict:
    """Everything the page shows of one run; `points`: every series' points by (run id, series key)."""
    env = results.environment
    config = results.job.config
    groups = group_runs([results])
    reference, _ = yardsticks(groups)
    digits = folder / "plots" / "test_digits.png"
    digits_name = None
    if digits.is_file():
        digits_name = f"digits-{hashlib.sha1(ident.encode()).hexdigest()[:12]}.png"
        _link_or_copy(digits, assets / digits_name)
    threshold = env.get("noise_threshold") or {}
    return {
        "id": ident, "created": results.created, "model": config.model, "model_text": describe_model(config),
        "machine": {key: env.get(key) for key in ("hostname", "cpu", "usable_cores", "memory_gib", "os", "python")},
        "packages": {name: version for name, version in env.get("packages", {}).items() if version},
        "stack": describe_stack(env["stack"]) if env.get("stack") else "not recorded",
        "command": env.get("command"), "commit": env.get("git_commit"), "blas_forced": env.get("blas_forced"),
        "threshold": recorded_threshold(results), "threshold_source": threshold.get("source", "default"),
        "job": {"backends": list(results.job.backends), "epochs": config.epochs, "batch": config.batch_size,
                "seeds": list(results.job.seeds), "rounds": results.job.rounds,
                "timing_rounds": results.job.timing_rounds, "device": results.job.device,
                "precision": results.job.precision, "target": results.job.target_accuracy,
                "train_limit": config.train_limit},
        "groups": [_group_view(group, reference.get(reference_key(group)),
                               points.get((ident, series_key(results, group)[0]))) for group in groups],
        "digits": f"assets/{digits_name}" if digits_name else None,
    }


def _series_view(series: Series) -> dict:
    regression = latest_against_baseline(series)
    return {"key": series.key, "backend": series.backend, "labels": series.labels, "threshold": series.threshold,
            "points": [{"run": p.run, "created": p.created, "value": p.epoch_s, "low": p.low, "high": p.high,
                        "n": p.processes, "versions": p.versions} for p in series.points],
            "changes": [{"index": c.index, "before": c.before, "after": c.after, "p": c.p_value}
                        for c in series.changes],
            "latest": None if regression is None else {"ratio": regression.ratio, "low": regression.low,
                                                       "high": regression.high, "baseline": regression.baseline}}


def _verify_view(ident: str, data: dict) -> dict:
    env, job = data.get("environment", {}), data.get("job", {})
    backends = {}
    for name, entry in data.get("backends", {}).items():
        steps, loss_rel = _downsampled(np.asarray(entry.get("loss_rel_per_step", []), np.float64))
        backends[name] = {"passed": entry.get("passed"), "checks": entry.get("checks", {}), "steps": steps,
                          "loss_rel": loss_rel}
    return {"id": ident, "created": data.get("created"), "hostname": env.get("hostname"), "cpu": env.get("cpu"),
            "model": job.get("config", {}).get("model"), "steps": data.get("steps"), "passed": data.get("passed"),
            "backends": backends, "pairs": [{"pair": p.get("pair"), "passed": p.get("passed")}
                                            for p in data.get("pairs", [])]}


def _sweep_view(ident: str, data: dict) -> dict:
    trials = []
    for trial in data.get("trials", []):
        job = trial.get("job", {})
        trials.append({"id": trial.get("id"), "status": trial.get("status"), "error": trial.get("error"),
                       "backend": (job.get("backends") or ["?"])[0], "batch": job.get("config", {}).get("batch_size"),
                       "devices": job.get("devices"), "device": job.get("device"),
                       "run": f"{ident}/trials/{trial.get('id')}"})
    return {"id": ident, "created": data.get("created"), "executor": data.get("executor"), "trials": trials}


def _suite_view(ident: str, data: dict) -> dict:
    return {"id": ident, "created": data.get("datetime"),
            "cpu": (data.get("machine_info") or {}).get("cpu", {}).get("brand_raw"),
            "benchmarks": [{"name": b.get("name"), "group": b.get("group"), "mean": b.get("stats", {}).get("mean"),
                            "stddev": b.get("stats", {}).get("stddev"), "rounds": b.get("stats", {}).get("rounds")}
                           for b in data.get("benchmarks", [])]}


def report_data(found: Found, assets: Path, acknowledged: set[tuple[str, str]], sources: Sequence[str]) -> dict:
    """The page's data: every run, series, step, verification, sweep and suite found."""
    from benchmarks.report.plots import backend_color

    series = build_series(found.runs)
    points = {(point.run, one.key): point for one in series for point in one.points}
    backends = {run.backend for _, _, results in found.runs for run in results.runs}
    backends |= {name for _, _, data in found.verifies for name in data.get("backends", {})}
    return {
        "colors": {backend: backend_color(backend) for backend in sorted(backends)},
        "sources": list(sources), "reference": REFERENCE_BACKEND, "skipped": found.skipped,
        "runs": [run_view(ident, folder, results, assets, points) for ident, folder, results in found.runs],
        "series": [_series_view(s) for s in series],
        "changes": change_rows(series, acknowledged),
        "verifies": [_verify_view(ident, data) for ident, _, data in found.verifies],
        "sweeps": [_sweep_view(ident, data) for ident, _, data in found.sweeps],
        "suites": [_suite_view(ident, data) for ident, _, data in found.suites],
    }


def _script_json(data: dict) -> str:
    """JSON that stays data inside a script: no `</script>`, no HTML comment opener, no line separators."""
    text = json.dumps(data, allow_nan=False, separators=(",", ":"))
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                         ("\u2029", "\\u2029")):
        text = text.replace(raw, escaped)
    return text


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:">
<title>mnist-bench report</title>
<link rel="stylesheet" href="assets/report.css">
</head>
<body>
<header><h1>mnist-bench report</h1><nav id="nav"></nav></header>
<main id="view"><p>Loading…</p></main>
<script src="assets/plotly.min.js"></script>
<script src="data.js"></script>
<script src="assets/report.js"></script>
</body>
</html>
"""


def write_site(found: Found, out: Path, acknowledged: set[tuple[str, str]], sources: Sequence[str]) -> Path:
    """Write out/index.html, out/data.js and out/assets/; returns index.html's path."""
    from plotly.offline import get_plotlyjs

    assets = out / "assets"
    assets.mkdir(parents=True, exist_ok=True)
    plotly_js = assets / "plotly.min.js"
    if not plotly_js.is_file():  # written once per site: 4.8 MB that a report refresh need not rewrite
        with atomic_path(plotly_js) as tmp:
            Path(tmp).write_text(get_plotlyjs(), encoding="utf-8")
    for name in PAGE_ASSETS:
        with atomic_path(assets / name) as tmp:
            shutil.copyfile(ASSETS / name, tmp)
    data = report_data(found, assets, acknowledged, sources)
    write_text_atomic(out / "data.js", f"window.MNIST_BENCH_REPORT = {_script_json(data)};\n")
    index = out / "index.html"
    write_text_atomic(index, PAGE)
    return index
