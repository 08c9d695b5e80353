"""Comparison tables (terminal and Markdown) and the run folder's summary.md, from saved results only."""

from __future__ import annotations

import dataclasses
import math
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from backends.registry import base_name
from benchmarks.measure.stack import describe_stack
from benchmarks.measure.stats import NOISE_THRESHOLD, Ratio, median_interval, speed_ratio
from common.atomic import write_text_atomic
from common.workloads import describe_model, training_flops_per_sample
from common.job import CURRENT_STACK, TIMING_EPOCHS, TIMING_WARMUP_EPOCHS, Job, stack_of
from common.results import Results, RunResult

REFERENCE_BACKEND = "keras"


@dataclasses.dataclass
class RunGroup:
    """All seeds of one backend on one device of one machine: one row of the table."""

    label: str
    backend: str
    device: str
    machine: str
    runs: list[RunResult]
    job: Job
    devices: int = 1
    # Which of the compared Results each run came from (parallel to `runs`): only runs of one Results ran
    # interleaved, so only they pair up in a ratio.
    origins: list[int] = dataclasses.field(default_factory=list)
    # The timing rounds' processes (Job.timing_rounds), as (run, index of its Results): they time epochs for the
    # speed figures and nothing else, so `runs` (accuracy, curves, costs) holds the full trainings only.
    timing_runs: list[tuple[RunResult, int]] = dataclasses.field(default_factory=list)
    # Within 1 +- this a ratio is called `~`: the machine's calibrated noise its run recorded, else NOISE_THRESHOLD.
    threshold: float = NOISE_THRESHOLD

    @property
    def runs_with_origins(self) -> list[tuple[RunResult, int]]:
        """(run, index of its Results) pairs; a group made by hand, without origins, is one Results."""
        return list(zip(self.runs, self.origins or [0] * len(self.runs)))

    @property
    def timed_runs(self) -> list[tuple[RunResult, int]]:
        """Every process that timed epochs, with its origin: the full trainings and the timing rounds'."""
        return self.runs_with_origins + self.timing_runs

    @property
    def ok_timed_runs(self) -> list[RunResult]:
        """The timed processes that finished."""
        return [run for run, _ in self.timed_runs if run.status == "ok"]

    @property
    def ok_runs(self) -> list[RunResult]:
        """Runs that finished training."""
        return [run for run in self.runs if run.status == "ok"]


def group_runs(results_list: Sequence[Results]) -> list[RunGroup]:
    """Group runs by (backend, device, device count, machine); the machine shows in labels only when it varies."""
    machines = {_machine(results) for results in results_list}
    groups: dict[tuple, RunGroup] = {}
    for origin, results in enumerate(results_list):
        machine = _machine(results)
        for run in results.runs:
            key = (run.backend, run.device, run.devices, machine)
            if key not in groups:
                device = run.device + (f"×{run.devices}" if run.devices > 1 else "")
                parts = [run.backend, device] + ([machine] if len(machines) > 1 else [])
                groups[key] = RunGroup(" · ".join(parts), run.backend, run.device, machine, [], results.job,
                                       run.devices, threshold=recorded_threshold(results))
            if run.timing_only:
                groups[key].timing_runs.append((run, origin))
            else:
                groups[key].runs.append(run)
                groups[key].origins.append(origin)
    return list(groups.values())


def recorded_threshold(results: Results) -> float:
    """The noise threshold the run was judged with: its machine's calibration when it had one, else the default."""
    recorded = results.environment.get("noise_threshold") or {}
    return float(recorded.get("threshold", NOISE_THRESHOLD))


def _machine(results: Results) -> str:
    env = results.environment
    return env.get("hostname") or env.get("machine") or "unknown machine"


def mean_std_ci(values: Sequence[float]) -> tuple[float, float, float] | None:
    """Mean, sample std and the half-width of the 95% t confidence interval (0 with one value)."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None
    if len(values) == 1:
        return values[0], 0.0, 0.0
    from scipy import stats

    std = float(np.std(values, ddof=1))
    half = float(stats.t.ppf(0.975, len(values) - 1) * std / math.sqrt(len(values)))
    return float(np.mean(values)), std, half


def _cell(values, digits: int, scale: float = 1.0, with_ci: bool = False) -> str:
    summary = mean_std_ci([v * scale if v is not None else None for v in values])
    if summary is None:
        return "—"
    mean, std, half = summary
    text = f"{mean:.{digits}f}"
    if len([v for v in values if v is not None]) > 1:
        text += f" ± {std:.{digits}f}"
        if with_ci:
            text += f" [{mean - half:.{digits}f}, {mean + half:.{digits}f}]"
    return text


NO_FLOOR_NOTE = ("x step floor = epoch s / (steps x this batch size's GEMMs + Adam traffic, timed with the faster of "
                 "NumPy's BLAS on the CPU's own kernel and XLA's dot"
                 "); '—': no ratio for epochs of fewer than 10 full batches, where fixed per-epoch costs, "
                 "not training, set the time")
# summary.md has every column; the terminal leaves out the two read least, to stay readable.


def speed_note(results_list: Sequence[Results]) -> str:
    """What `speed vs keras` is, and the noise threshold its verdicts used (and where that came from)."""
    thresholds = {recorded_threshold(results): (results.environment.get("noise_threshold") or {}).get(
        "source", "default") for results in results_list}
    threshold = max(thresholds)
    return ("speed vs keras: keras' steady epoch time over the row's, the geometric mean of the ratios of "
            "processes that ran side by side (same round and seed: the full rounds' and the timing rounds'), with a "
            "95% bootstrap CI over them (rounds, then each process' epochs) and a verdict: faster, slower, or ~ when "
            f"the CI holds 1 or lies within 1 ± {threshold:.3f} (this machine's noise: {thresholds[threshold]}); "
            "'(no CI: 1 round)': use --timing-rounds")
STARTUP_NOTE = ("startup s: worker spawn to the end of the first training step (interpreter, framework import, "
                "data, model build, first step's trace + compile + run); peak RSS: the worker's largest resident "
                "set; per-phase figures, device memory and plots in summary.md")
COLUMNS = ("run", "status", "test acc %", "val acc %", "epoch s", "step ms p50/p90", "samples/s", "GFLOP/s",
           "x step floor", "x GEMM floor", "compile s", "startup s", "peak RSS MiB", "time to target s", "total s",
           "speed vs keras", "speed vs 1 device", "speed vs current")
# The terminal shows the verdict columns only, so the table fits a 100-column terminal; summary.md and the report
# (`mnist-bench report`) have the rest. `status` joins them when a run did not finish.
TERMINAL_COLUMNS = ("run", "status", "test acc %", "epoch s", "speed vs keras", "x step floor", "speed vs 1 device",
                    "speed vs current")
TERMINAL_WIDTH = 100  # where the terminal's width is unknown (a pipe, a file)


def table_rows(groups: Sequence[RunGroup]) -> list[dict[str, str]]:
    """One formatted row per group; seeds are summarised as mean ± std [95% CI], speed ratios as ratio [95% CI]
    over the interleaved rounds with a verdict."""
    reference, one_device = yardsticks(groups)
    # The column appears only when some multi-device group has its one-device twin beside it.
    scaling = any(group.devices > 1 and (group.backend, group.device, group.machine) in one_device
                  for group in groups)
    on_current = {(base_name(group.backend), group.device, group.devices, group.machine): group for group in groups
                  if stack_of(group.backend) == CURRENT_STACK}
    rows = []
    for group in groups:
        row = table_row(group, reference.get(reference_key(group)))
        if scaling:
            single = one_device.get((group.backend, group.device, group.machine))
            row["speed vs 1 device"] = ("— (profiled)" if _profiled(group) else ratio_cell(single, group)
                                        if single and group.devices > 1 else "—")
        if on_current:
            # The same backend on the running stack: what this stack's versions buy or cost.
            current = on_current.get((base_name(group.backend), group.device, group.devices, group.machine))
            row["speed vs current"] = ("— (profiled)" if _profiled(group) else ratio_cell(current, group)
                                       if current else "—")
        rows.append(row)
    return rows


def reference_key(group: RunGroup) -> tuple:
    """Where a group's yardstick is found: the reference backend on the same device, device count, machine and
    stack (each stack's rows against its own keras)."""
    return group.device, group.devices, group.machine, stack_of(group.backend)


def yardsticks(groups: Sequence[RunGroup]) -> tuple[dict, dict]:
    """The groups ratios are taken against: the reference backend's per (device, devices, machine), and each
    backend's own on one device per (backend, device, machine). Profiled runs are never a yardstick."""
    reference, one_device = {}, {}
    for group in groups:
        if not timed_units(group):
            continue
        if base_name(group.backend) == REFERENCE_BACKEND and "#" not in group.backend:
            reference[reference_key(group)] = group
        if group.devices == 1:
            one_device[(group.backend, group.device, group.machine)] = group
    return reference, one_device


def steady_epoch_seconds(run: RunResult) -> list[float]:
    """The run's steady-state epoch times: from where `summarize_timing` found steady state (or after the first,
    compiling epoch); a one-epoch run has only its compiling epoch."""
    start = run.timing.get("steady_from_epoch", 1)
    times = [entry["epoch_s"] for entry in run.history[start:] if entry.get("epoch_s")]
    if times:
        return times
    if run.timing.get("epoch_s_median"):
        return [run.timing["epoch_s_median"]]  # a run saved without its history: its one figure
    return [entry["epoch_s"] for entry in run.history[-1:] if entry.get("epoch_s")]


def _shares_program(group: RunGroup) -> bool:
    return any(run.timing.get("seeds_in_program", 1) > 1 for run in group.ok_runs)


def timed_units(group: RunGroup, per_seed: bool = True) -> dict[tuple, list[float]]:
    """The group's independent timings, keyed by (results, round, seed): one process each, its steady epoch
    times as the blocks. Seeds that shared one program (or `per_seed` False) are one unit per (results, round)."""
    shared = _shares_program(group)
    per_seed = per_seed and not shared
    units: dict[tuple, list[float]] = {}
    for run, origin in group.timed_runs:
        if run.status != "ok" or run.timing.get("profiled_epoch"):
            continue
        key = (origin, run.round, run.seed if per_seed else None)
        if shared and key in units:
            continue  # the seeds of one program share its clock: its epoch times once
        units.setdefault(key, []).extend(steady_epoch_seconds(run))
    return {key: blocks for key, blocks in units.items() if blocks}


def speed_ratio_between(baseline: RunGroup, candidate: RunGroup) -> Ratio | None:
    """How many times faster `candidate` trained than `baseline`, with its 95% CI over their runs and a verdict.

    Runs that ran side by side (the same results, round and seed) are paired, so drift common to both cancels;
    with no such pairs (runs of different sessions) the two sides are compared unpaired.
    """
    per_seed = not (_shares_program(baseline) or _shares_program(candidate))
    base, cand = timed_units(baseline, per_seed), timed_units(candidate, per_seed)
    if not base or not cand:
        return None
    paired = sorted(set(base) & set(cand), key=str)
    # Runs of two machines are judged by the noisier one's threshold.
    threshold = max(baseline.threshold, candidate.threshold)
    if paired:
        return speed_ratio([base[key] for key in paired], [cand[key] for key in paired], threshold)
    return speed_ratio(list(base.values()), list(cand.values()), threshold, paired=False)


def ratio_cell(baseline: RunGroup | None, candidate: RunGroup) -> str:
    """'3.42x [3.10, 3.80] faster', '1.02x [0.97, 1.08] ~', or '3.42x (no CI: 1 round)'."""
    if baseline is candidate:
        return "1.00x"
    ratio = speed_ratio_between(baseline, candidate) if baseline is not None else None
    return "—" if ratio is None else str(ratio)


def forest_rows(groups: Sequence[RunGroup]) -> list[tuple[RunGroup, RunGroup, Ratio]]:
    """(group, its reference group, speed ratio) for every group that has a ratio against the reference."""
    reference, _ = yardsticks(groups)
    rows = []
    for group in groups:
        baseline = reference.get(reference_key(group))
        if baseline is not None and baseline is not group and not _profiled(group):
            ratio = speed_ratio_between(baseline, group)
            if ratio is not None:
                rows.append((group, baseline, ratio))
    return rows


def _profiled(group: RunGroup) -> bool:
    return any(run.timing.get("profiled_epoch") for run in group.runs)


def floor_errors(groups) -> list[str]:
    """A line for every group that trained faster than its step floor: that floor is not this machine's limit."""
    lines = []
    for group in groups:
        ratios = [r.timing.get("step_floor_ratio") for r in group.ok_timed_runs if r.timing.get("step_floor_ratio")]
        if ratios and min(ratios) < 1:
            lines.append(f"{group.label}: floor error: an epoch ran in {min(ratios):.2f}x the step floor, so the floor "
                         "is not this machine's limit (a faster kernel exists than the floor was timed with); "
                         "measure it again with `mnist-bench roofline`")
    return lines


def floor_cell(values: list) -> str:
    """A floor ratio: the median over the runs and its 95% CI; below 1 it is a floor error, never a ratio."""
    present = [value for value in values if value is not None and math.isfinite(value)]
    if not present:
        return "—"
    if min(present) < 1:
        return "floor error"
    median, low, high = median_interval(present)
    return f"{median:.2f} (no CI: 1 run)" if low is None else f"{median:.2f} [{low:.2f}, {high:.2f}]"


def step_cell(runs: list) -> str:
    """Median and p90 of the clocked steps; without --step-times the epoch's mean step and no p90 (marked ~)."""
    medians = [r.timing.get("step_ms_median") for r in runs]
    if not runs or medians[0] is None:
        return "—"
    p90s = [r.timing.get("step_ms_p90") for r in runs]
    if any(p90 is None for p90 in p90s):
        return f"~{np.median(medians):.3f} / —"
    return f"{np.median(medians):.3f} / {np.median(p90s):.3f}"


def repeats_label(group: RunGroup) -> str:
    """' ×3 seeds ×5 rounds +15 timing': how many seeds, interleaved full rounds and timing rounds the row's figures
    summarise."""
    seeds = len({run.seed for run in group.runs})
    rounds = len({(origin, run.round) for run, origin in group.runs_with_origins})
    timing = len({(origin, run.round) for run, origin in group.timing_runs})
    return ((f" ×{seeds} seeds" if seeds > 1 else "") + (f" ×{rounds} rounds" if rounds > 1 else "")
            + (f" +{timing} timing" if timing else ""))


def unsteady_runs(groups: Sequence[RunGroup]) -> list[str]:
    """A line per group with runs whose epoch times never settled: their figures are over every epoch but the first."""
    lines = []
    for group in groups:
        unsteady = [run for run in group.ok_runs if run.timing.get("steady_state_found") is False]
        if unsteady and group.job.config.epochs >= 3:
            lines.append(f"{group.label}: no steady state in {len(unsteady)} of {len(group.ok_runs)} runs (epoch "
                         "times still drifting or too noisy to call, within 10%); their figures use every epoch "
                         "after the first")
    return lines


def status_cell(group: RunGroup) -> str:
    """'ok', 'ok 2, failed 1', 'interrupted (2/10 epochs)', '... (profiled)'."""
    statuses = sorted({run.status for run in group.runs})
    status = ", ".join(f"{s} {sum(r.status == s for r in group.runs)}" if len(group.runs) > 1 else s
                       for s in statuses)
    if len(group.runs) == 1 and group.runs[0].status != "ok" and group.runs[0].history:
        # A stopped run keeps the epochs it completed; say how far it got.
        status += f" ({len(group.runs[0].history)}/{group.job.config.epochs} epochs)"
    return status + (" (profiled)" if _profiled(group) else "")


def time_to_target_cell(group: RunGroup) -> str:
    """Seconds to the target accuracy over the seeds that reached it, and how many did."""
    ok = group.ok_runs
    reached = [r.timing.get("time_to_target_s") for r in ok if r.timing.get("time_to_target_s") is not None]
    cell = _cell(reached, 2, with_ci=True) if reached else "not reached" if ok else "—"
    if ok and 0 < len(reached) < len(ok):
        cell += f" ({len(reached)}/{len(ok)} reached)"
    return cell


def table_row(group: RunGroup, reference: RunGroup | None) -> dict[str, str]:
    """One group's formatted cells; `reference` is its yardstick for `speed vs keras`."""
    ok = group.ok_runs
    timing = lambda key: [r.timing.get(key) for r in ok]  # noqa: E731
    # Speed figures are per process: every timed process counts, the timing rounds' too.
    speed = lambda key: [r.timing.get(key) for r in group.ok_timed_runs]  # noqa: E731
    shared = max((r.timing.get("seeds_in_program", 1) for r in ok), default=1)
    return {
        "run": group.label + repeats_label(group) + (f" (one program; times are for all {shared})" if shared > 1 else ""),
        "status": status_cell(group),
        "test acc %": _cell([r.test["accuracy"] for r in ok if r.test], 2, 100, with_ci=True),
        "val acc %": _cell([r.history[-1]["val_accuracy"] for r in ok if r.history], 2, 100),
        "epoch s": _cell(speed("epoch_s_median"), 3),
        "step ms p50/p90": step_cell(ok),
        "samples/s": _cell(speed("samples_per_s"), 0, with_ci=True),
        "GFLOP/s": _cell(speed("gflops_per_s"), 1),
        "x step floor": floor_cell(speed("step_floor_ratio")),
        "x GEMM floor": floor_cell(speed("floor_ratio")),
        "compile s": _cell(timing("compile_s"), 2),
        "time to target s": time_to_target_cell(group),
        "total s": _cell(timing("total_s"), 1),
        # Costs are per process: also shown for runs that did not finish.
        "startup s": _cell([r.costs.get("time_to_first_step_s") for r in group.runs], 2),
        "peak RSS MiB": _cell([r.costs.get("peak_rss_mib") for r in group.runs], 0),
        "speed vs keras": "— (profiled)" if _profiled(group) else ratio_cell(reference, group),
    }


def format_costs_table(groups: Sequence[RunGroup]) -> str:
    """Start-up by phase, memory and device memory per configuration (medians over its runs), as Markdown."""
    from benchmarks.harness.costs import STARTUP_PHASES

    header = ["run", *(phase.removesuffix("_s").replace("_", " ") + " s" for phase in STARTUP_PHASES),
              "to first step s", "peak RSS MiB", "RSS end of training MiB", "device peak MiB"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for group in groups:
        costs = [run.costs for run in group.runs if run.costs]

        def median(values, digits=2):
            values = [v for v in values if v is not None]
            return f"{np.median(values):.{digits}f}" if values else "—"

        device = [c["device_memory"]["peak_bytes"] / 2 ** 20 for c in costs if c.get("device_memory")]
        cells = [median([c.get("startup", {}).get(phase) for c in costs]) for phase in STARTUP_PHASES]
        cells += [median([c.get("time_to_first_step_s") for c in costs]),
                  median([c.get("peak_rss_mib") for c in costs], 0),
                  median([c.get("rss_end_of_training_mib") for c in costs], 0),
                  median(device, 0) if device else "n/a (CPU)" if group.device == "cpu" else "—"]
        whole_call = any(c.get("first_step_is_whole_call") for c in costs)
        lines.append("| " + " | ".join([group.label + (" (first step = whole first epoch call)" if whole_call else ""),
                                        *cells]) + " |")
    return "\n".join(lines)


def format_text_table(rows: Sequence[dict[str, str]], columns: Sequence[str] = TERMINAL_COLUMNS) -> str:
    """Aligned columns for the terminal (those of `columns` that the rows have)."""
    columns = [col for col in columns if rows and col in rows[0]]
    widths = {col: max(len(col), *(len(row[col]) for row in rows)) for col in columns}
    lines = ["  ".join(col.ljust(widths[col]) for col in columns),
             "  ".join("-" * widths[col] for col in columns)]
    lines += ["  ".join(row[col].ljust(widths[col]) for col in columns) for row in rows]
    return "\n".join(lines)


def terminal_width() -> int:
    """The terminal's columns ($COLUMNS or the tty's), TERMINAL_WIDTH when output goes to a pipe or file."""
    import shutil

    return shutil.get_terminal_size((TERMINAL_WIDTH, 24)).columns


def terminal_rows(groups: Sequence[RunGroup], rows: list[dict[str, str]]) -> tuple[list[dict[str, str]], list[str]]:
    """The rows with labels short enough for a terminal: the device left out where every row ran on the same one
    (the notes say which), a shared program's remark moved to a note. Returns (rows, notes)."""
    devices = {group.label.split(" · ")[1] for group in groups if " · " in group.label}
    shared_device = len(devices) == 1 and all(" · " in group.label for group in groups)
    notes = [f"every row ran on {next(iter(devices))}"] if shared_device else []
    shortened = []
    for group, row in zip(groups, rows):
        label = row["run"]
        if " (one program" in label:
            label, _, remark = label.partition(" (one program")
            notes.append(f"{group.label}: one program{remark.removesuffix(')')}")
        if shared_device:
            parts = group.label.split(" · ")
            label = " · ".join(parts[:1] + parts[2:]) + label.removeprefix(group.label)
        shortened.append({**row, "run": label})
    return shortened, notes


def format_terminal_table(rows: Sequence[dict[str, str]], width: int | None = None) -> str:
    """The verdict columns laid out by rich to fit `width` (the terminal's): cells wrap, lines never do."""
    import io

    from rich import box
    from rich.console import Console
    from rich.table import Table

    columns = [col for col in TERMINAL_COLUMNS if rows and col in rows[0]]
    if all(row.get("status") == "ok" for row in rows):
        columns.remove("status")
    # A column with nothing in it (no keras to compare with, no floor measured) is left out.
    columns = [col for col in columns if col == "run" or any(row[col] != "—" for row in rows)]
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for col in columns:
        # The run's label stays whole (it names the row); the other cells wrap inside their column where they must.
        table.add_column(col, overflow="fold", no_wrap=col == "run")
    for row in rows:
        table.add_row(*(row[col] for col in columns))
    buffer = io.StringIO()
    Console(file=buffer, width=width or terminal_width(), color_system=None, highlight=False,
            emoji=False, markup=False).print(table)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines() if line.strip())


def format_markdown_table(rows: Sequence[dict[str, str]], columns: Sequence[str] = COLUMNS) -> str:
    """A GitHub-flavoured Markdown table (of those of `columns` that the rows have)."""
    columns = [col for col in columns if rows and col in rows[0]]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(row[col] for col in columns) + " |" for row in rows]
    return "\n".join(lines)


def failures(groups: Sequence[RunGroup]) -> list[str]:
    """One line per run that did not finish: how far it got (its completed epochs are kept) and its error."""
    return [f"{run.backend} seed {run.seed} ({run.device}"
            + (f", timing round {run.round + 1}" if run.timing_only else "") + f"): {run.status} after "
            f"{len(run.history)}/{TIMING_WARMUP_EPOCHS + TIMING_EPOCHS if run.timing_only else group.job.config.epochs} epochs: {run.error}"
            for group in groups for run, _ in group.timed_runs if run.status != "ok"]


def split_by_model(results_list: Sequence[Results]) -> dict[str, list[Results]]:
    """The results of each model, in order of first appearance: runs of different models are never ranked together."""
    by_model: dict[str, list[Results]] = {}
    for results in results_list:
        by_model.setdefault(results.job.config.model, []).append(results)
    return by_model


def model_heading(results_list: Sequence[Results]) -> str:
    """'model cnn: convnet ...' for the heading of one model's table."""
    config = results_list[0].job.config
    return f"model {config.model}: {describe_model(config)}"


def text_report(results_list: Sequence[Results]) -> str:
    """The table `run`, `show` and `compare` print; one table per model, each with its own speed ratios."""
    by_model = split_by_model(results_list)
    if len(by_model) > 1:
        blocks = [f"== {model_heading(part)} ==\n{_model_text_report(part)}" for part in by_model.values()]
        return ("\n\n".join(blocks) + "\n\nruns of different models are ranked separately: each table's 'speed vs "
                "keras' compares runs of its own model only")
    return f"{model_heading(results_list)}\n{_model_text_report(results_list)}"


def _model_text_report(results_list: Sequence[Results]) -> str:
    """One model's table and its notes."""
    groups = group_runs(results_list)
    target = results_list[0].job.target_accuracy
    rows, label_notes = terminal_rows(groups, table_rows(groups))
    lines = [format_terminal_table(rows),
             f"epoch s: steady state (found from the epoch times, never the first, compiling epoch); "
             f"{speed_note(results_list)}; {NO_FLOOR_NOTE}; precision {results_list[0].job.precision}",
             f"step times, samples/s, GFLOP/s, compile, start-up, memory and time to val acc >= {target:.2f}: "
             "summary.md beside the results, and `mnist-bench report`"]
    for results in results_list:
        roofline = results.environment.get("roofline")
        if roofline:
            step = roofline.get("step_floor")
            measured = roofline.get("measurements", 1)
            lines.append(f"measured limits ({_machine(results)}, {roofline['device']}"
                         + (f"; best of {measured} measuring processes" if measured > 1 else "")
                         + ("; kept from an earlier run on this machine" if roofline.get("cached") else "")
                         + f"): fp32 GEMM "
                         f"{roofline['gemm_peak_gflops']:.1f} GFLOP/s, bandwidth {roofline['bandwidth_gb_s']:.1f} GB/s"
                         + (f"; step floor at batch {step['batch_size']}: {step['step_floor_s'] * 1e3:.3f} ms "
                            f"(GEMMs {step['gemm_s_1_thread'] * 1e3:.3f} ms on 1 thread, "
                            f"{step['gemm_s_all_threads'] * 1e3:.3f} ms on {step['threads']}"
                            + (f", XLA's dot {step['gemm_s_xla'] * 1e3:.3f} ms" if step.get("gemm_s_xla") else "")
                            + f"; set by {step.get('floor_gemms_by', step['blas'])})"
                            if step else "")
                         + (f"; gradient all-reduce over {reduce['devices']} devices: "
                            f"{reduce['allreduce_s'] * 1e3:.3f} ms per step"
                            if (reduce := roofline.get("allreduce")) else ""))
        elif results.environment.get("roofline_skipped"):
            lines.append(f"limits and floors: {results.environment['roofline_skipped']}")
    forced = results.environment.get("blas_forced")
    if forced:
        lines.append("this environment forces OpenBLAS' kernel (" + ", ".join(f"{k}={v}" for k, v in forced.items())
                     + "): NumPy runs slower kernels than the CPU has everywhere but in the floor's measurement, "
                     "which runs without them")
    lines += [f"! {line}" for line in failures(groups)]
    lines += [f"! {line}" for line in floor_errors(groups)]
    lines += [f"note: {line}" for line in unsteady_runs(groups) + label_notes]
    table, *notes = lines
    width = terminal_width()
    return "\n".join([table, *(textwrap.fill(note, width, subsequent_indent="  ", break_on_hyphens=False)
                               for note in notes)])


def saved_test_set(results: Results):
    """The test images and labels behind a run's predictions, for the digit grid; None where MNIST is not at hand."""
    from common.mnist import MnistDataError, load_mnist

    source = results.job.data_dir or results.environment.get("data_source")
    try:
        data = load_mnist(source if source and Path(source).is_dir() else None, progress=False)
        return data.test_images, data.test_labels
    except MnistDataError as error:
        print(f"warning: no test-digit grid: {error}", file=sys.stderr)
        return None


def breakdown_section(results_list: Sequence[Results], out_dir: Path) -> list[str]:
    """The per-op breakdown of a --profile run (its table and stacked bars); nothing for a run without traces."""
    from benchmarks.report.breakdown import format_breakdown, run_breakdowns
    from benchmarks.report.plots import plot_breakdown

    if len(results_list) != 1 or not (out_dir / "results.json").is_file():
        return []  # compare's reports: each run's own summary has its breakdown
    breakdowns = run_breakdowns(out_dir)
    if not breakdowns:
        return []
    plot = plot_breakdown(breakdowns, out_dir / "plots" / "breakdown.png")
    return ["### Where the step's time goes (profiled steps)", "",
            "ms per traced step by op category (`mnist-bench breakdown`; on a CPU op times are summed over XLA's "
            "threads; `between ops`: the traced window's wall time outside every op):", "",
            format_breakdown(breakdowns, markdown=True), "", f"![breakdown](plots/{plot.name})", ""]


def route_lines(groups) -> list[str]:
    """One line per configuration: its kernel routes as its first run read them, and the XLA flags in force."""
    from backends.routes import format_routes

    lines = []
    for group in groups:
        recorded = next((run.kernel_routes for run in group.runs if run.kernel_routes), {})
        if not recorded:
            lines.append(f"{group.label}: not recorded (a run from before routes were read)")
            continue
        flags = recorded.get("xla_flags")
        described = (format_routes(recorded["routes"]) + f" ({recorded['source']})" if "routes" in recorded
                     else recorded.get("note", "—"))
        lines.append(f"{group.label}: {described}" + (f"; XLA_FLAGS `{flags}`" if flags else ""))
    return lines


def write_report(results_list: Sequence[Results], out_dir: Path, title: str = "mnist-bench run") -> Path:
    """Render plots into out_dir/plots and write out_dir/summary.md; returns the summary's path.

    Runs of several models get one report each, in out_dir/<model>/, and a summary.md that links them.
    """
    by_model = split_by_model(results_list)
    if len(by_model) > 1:
        return _write_model_index(by_model, out_dir, title)
    from benchmarks.report.plots import plot_all

    groups = group_runs(results_list)
    plots = plot_all(groups, out_dir / "plots", saved_test_set(results_list[0]), forest_rows(groups))
    lines = [f"# {title}", "", *_results_section(groups, results_list)]
    problems = failures(groups)
    if problems:
        lines += ["### Runs that did not finish", ""] + [f"- {line}" for line in problems] + [""]
    lines += ["### Kernel routes", "", "Which library ran each class of op of each backend's compiled training "
              "program (instructions per class; `XLA codegen`: XLA's own generated loops), and the XLA flags in "
              "force (docs/performance.md):", ""] + [f"- {line}" for line in route_lines(groups)] + [""]
    lines += breakdown_section(results_list, out_dir)
    lines += ["## Plots", ""]
    for path in plots:
        lines += [f"![{path.stem}](plots/{path.name})", ""]
    lines += ["## Environment", ""]
    for results in results_list:
        if len(results_list) > 1:
            lines += [f"### {_machine(results)} ({results.created})", ""]
        lines += environment_lines(results)
    path = out_dir / "summary.md"
    write_text_atomic(path, "\n".join(lines))
    return path


def _write_model_index(by_model: dict[str, list[Results]], out_dir: Path, title: str) -> Path:
    """One report per model in out_dir/<model>/, and out_dir/summary.md linking them."""
    lines = [f"# {title}", "", "Runs of different models are reported and ranked separately:", ""]
    for model, part in by_model.items():
        (out_dir / model).mkdir(parents=True, exist_ok=True)
        write_report(part, out_dir / model, title=f"{title} — {model_heading(part)}")
        lines.append(f"- [{model_heading(part)}]({model}/summary.md): {sum(len(r.runs) for r in part)} runs")
    path = out_dir / "summary.md"
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path


def _results_section(groups: list[RunGroup], results_list: Sequence[Results]) -> list[str]:
    """The summary's opening line, its results table with what each column means, and the costs table."""
    job = results_list[0].job
    config = job.config
    timing = sum(len(g.timing_runs) for g in groups)
    return [f"{len(groups)} configurations, {sum(len(g.runs) for g in groups)} runs"
            + (f" and {timing} timing processes" if timing else "") + ". "
            f"Model: {describe_model(config)}. Config: {config.epochs} epochs, batch {config.batch_size}, "
            f"lr {config.learning_rate}, validation split {config.validation_split}, "
            f"seeds {list(job.seeds)}" + (f", train limit {config.train_limit}" if config.train_limit else "") + ".",
            "", "## Results", "", format_markdown_table(table_rows(groups)), "",
            "Steady state starts where the epoch times settle (a changepoint on them; never the first epoch, "
            "whose first step traces and compiles: `compile s`). "
            f"{speed_note(results_list)}; `x step floor` has the median over runs and its 95% bootstrap CI. "
            "Epoch times cover the backend's whole epoch call, host-side batch preparation included; "
            "step times are wall-clock after the device finished the step. "
            f"GFLOP/s counts the analytic training FLOPs ({training_flops_per_sample(config):,} "
            f"per sample for the {config.model}); "
            "`x GEMM floor` is the epoch time over the time those FLOPs take at this machine's measured "
            f"large-matrix fp32 GEMM peak (see Environment), a rate batch-32 shapes never reach; {NO_FLOOR_NOTE}. "
            f"Time to target: from the start of training to the end of the first epoch whose validation "
            f"accuracy is >= {job.target_accuracy}, validation time included. "
            f"{STARTUP_NOTE.replace('; per-phase figures, device memory and plots in summary.md', '')}. "
            "Other cells: mean ± std [95% t-interval] over the runs (seeds and rounds).", "", "### Costs besides step time", "",
            format_costs_table(groups), ""]


def environment_lines(results: Results) -> list[str]:
    """Where and with what a run was measured: machine, packages, stack, devices, settings, data, limits, commit."""
    env = results.environment
    packages = ", ".join(f"{k} {v}" for k, v in env.get("packages", {}).items() if v)
    devices = sorted({f"{r.backend}: {r.device_name}" for r in results.runs if r.device_name})
    lines = [f"- Machine: {env.get('cpu')}, {env.get('usable_cores')} usable cores, "
             f"{env.get('memory_gib')} GiB, {env.get('os')}",
             f"- Python {env.get('python')}; {packages}",
             f"- Stack: {describe_stack(env['stack']) if env.get('stack') else 'not recorded'}",
             f"- Devices: {'; '.join(devices) or '—'}",
             f"- Settings: {env.get('env') or 'none set'}",
             f"- Precision: {results.job.precision} (per-process framework settings: "
             + ("; ".join(f"{name}: {' '.join(f'{k}={v}' for k, v in settings.items())}"
                          for name, settings in env.get("framework_settings", {}).items()) or "not recorded")
             + ")",
             f"- Data: {env.get('data_source')} (canonical: {env.get('data_canonical')})",
             "- Measured limits: " + (f"fp32 GEMM {env['roofline']['gemm_peak_gflops']:.1f} GFLOP/s, "
                                       f"bandwidth {env['roofline']['bandwidth_gb_s']:.1f} GB/s "
                                       f"({env['roofline']['device']})" if env.get("roofline") else
                                       env.get("roofline_skipped", "—")),
             f"- Commit: {env.get('git_commit')}"]
    return lines + [f"- Resumed: {entry['at']} on {entry['hostname']} (commit {entry['git_commit']})"
                    for entry in env.get("resumed", [])] + [""]
