"""What a person reads of a sweep: one row per trial, summary.md and the plots."""

from __future__ import annotations

import collections
from collections.abc import Sequence
from pathlib import Path

from benchmarks.sweep.index import TRIALS_DIR, SweepIndex, load_trials
from common.atomic import write_text_atomic
from common.job import Job
from common.results import Results

SUMMARY_COLUMNS = ("trial", "backend", "batch", "devices", "lr", "precision", "XLA flags", "seed", "status", "node",
                   "test acc %", "epoch s", "samples/s", "speed vs 1 device", "time to target s")


def summary_rows(sweep_dir: Path) -> list[dict[str, str]]:
    """One row per trial, in grid order; a trial without results shows its status and error only."""
    return _summary_rows(*load_trials(sweep_dir))


def _summary_rows(index: SweepIndex, results: dict[str, Results]) -> list[dict[str, str]]:
    from benchmarks.measure.stats import NOISE_THRESHOLD, speed_ratio
    from benchmarks.report.tables import steady_epoch_seconds

    runs = {trial: saved.runs[0] for trial, saved in results.items()}
    # Every ok round of a trial: its steady epochs, one process each.
    rounds = {trial: [steady_epoch_seconds(run) for run in saved.runs if run.status == "ok"]
              for trial, saved in results.items()}
    one_device = {}
    for record in index.trials:
        run = runs.get(record.id)
        job = Job.from_dict(record.job)
        if run and run.status == "ok" and job.devices == 1 and all(rounds[record.id]):
            one_device[_scaling_key(job)] = rounds[record.id]
    rows = []
    for record in index.trials:
        job, run = Job.from_dict(record.job), runs.get(record.id)
        ok = run is not None and run.status == "ok"
        timing = run.timing if ok else {}
        single = one_device.get(_scaling_key(job))
        epoch_s = timing.get("epoch_s_median")
        # Trials run one after another, not side by side: the two sides are resampled apart (unpaired).
        scaling = (str(speed_ratio(single, rounds[record.id], NOISE_THRESHOLD, paired=False))
                   if single and ok and job.devices > 1 and all(rounds[record.id]) else "—")
        tta = timing.get("time_to_target_s")
        rows.append({
            "trial": record.id, "backend": job.backend, "batch": str(job.config.batch_size),
            "devices": f"{job.device}×{job.devices}", "lr": f"{job.config.learning_rate:g}",
            "precision": job.precision, "XLA flags": route_label(job.xla_flags), "seed": str(job.seeds[0]),
            "status": record.status + (f" ({record.error})" if record.error else ""),
            "node": record.node or "—",
            "test acc %": f"{100 * run.test['accuracy']:.2f}" if ok and run.test else "—",
            "epoch s": f"{epoch_s:.3f}" if epoch_s else "—",
            "samples/s": f"{timing['samples_per_s']:.0f}" if timing.get("samples_per_s") else "—",
            "speed vs 1 device": scaling,
            "time to target s": f"{tta:.2f}" if tta is not None else ("not reached" if ok else "—"),
        })
    return rows


def _scaling_key(job: Job) -> tuple:
    return (job.backend, job.device, job.config.batch_size, job.config.learning_rate, job.precision, job.xla_flags,
            job.seeds[0])


def route_label(xla_flags: str | None) -> str:
    """A trial's kernel route in words: the backend's own, XLA's defaults, or the flags given."""
    return "own route" if xla_flags is None else xla_flags or "XLA defaults"


def format_summary(rows: Sequence[dict[str, str]], markdown: bool = False) -> str:
    """The summary table, aligned for the terminal (the trial id left out: its columns say it) or as Markdown."""
    from benchmarks.report.tables import format_markdown_table, format_text_table

    if markdown:
        return format_markdown_table(rows, SUMMARY_COLUMNS)
    return format_text_table(rows, [column for column in SUMMARY_COLUMNS if column != "trial"])


def write_sweep_report(sweep_dir: Path) -> list[dict[str, str]]:
    """summary.md and the plots, from the saved trials only; returns the table's rows."""
    from benchmarks.report.plots import plot_sweep

    index, results = load_trials(sweep_dir)
    rows = _summary_rows(index, results)
    plots = plot_sweep(list(results.values()), sweep_dir / "plots", index.grid.base.target_accuracy)
    counts = collections.Counter(record.status for record in index.trials)
    lines = [f"# mnist-bench sweep ({index.executor} executor)", "",
             f"Created {index.created}; {len(index.trials)} trials: "
             + ", ".join(f"{count} {status}" for status, count in sorted(counts.items())) + ".", "",
             format_summary(rows, markdown=True), "",
             "epoch s: median steady-state epoch (after the first, compiling one); speed vs 1 device: the same "
             "grid point's one-device epoch time over this one's, with a 95% CI over the two trials' rounds "
             "(unpaired; `--rounds 3` or more for a CI) and a verdict; each trial's full report: "
             f"`mnist-bench show {TRIALS_DIR}/<trial>`.", ""]
    lines += [f"![{path.stem}](plots/{path.name})" for path in plots]
    write_text_atomic(sweep_dir / "summary.md", "\n".join(lines) + "\n")
    return rows
