"""Every figure mnist-bench draws, from saved results only. The one module that imports matplotlib."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from common.atomic import atomic_path

DPI = 110
ZERO_FLOOR = 1e-12  # exact agreement, drawn on a log axis


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
OTHER_COLOR = "#7f7f7f"  # a backend the registry does not know (a study's)


def backend_color(backend: str) -> str:
    """A backend's colour on every plot and page: by its place in the registry (`flax#2` takes flax's)."""
    from backends.registry import BACKENDS, base_name

    order = list(BACKENDS)
    name = base_name(backend)
    return PALETTE[order.index(name) % len(PALETTE)] if name in order else OTHER_COLOR


def _colors(groups) -> dict[str, str]:
    """Each group's colour: its backend's where the backends tell the groups apart, else one per group."""
    if len({backend_color(group.backend) for group in groups}) == len(groups):
        return {group.label: backend_color(group.backend) for group in groups}
    return {group.label: PALETTE[index % len(PALETTE)] for index, group in enumerate(groups)}


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def plot_all(groups: Sequence, out_dir: Path, test_set: tuple[np.ndarray, np.ndarray] | None = None,
             ratios: Sequence = ()) -> list[Path]:
    """Draw every plot that the results support into out_dir; return the files written.

    `test_set` (uint8 images N x 28 x 28, labels N) is what the runs' test predictions were made on,
    for the digit grid; without it the grid is left out. `ratios`: the speed ratios for the forest plot.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    with_history = [g for g in groups if any(r.history for r in g.runs)]
    with_steps = [g for g in groups if any(r.step_ms for r in g.ok_runs)]
    with_confusion = [g for g in groups if any(r.confusion for r in g.ok_runs)]
    paths = []
    if with_history:
        paths.append(plot_curves(with_history, ("accuracy", "val_accuracy"), "Accuracy", "accuracy (%)",
                                 out_dir / "accuracy.png", scale=100.0))
        paths.append(plot_curves(with_history, ("loss", "val_loss"), "Loss (categorical cross-entropy)",
                                 "loss", out_dir / "loss.png"))
    if with_steps:
        paths.append(plot_step_times(with_steps, out_dir / "step_times.png"))
    if any(g.ok_runs for g in groups):
        paths.append(plot_speed(groups, out_dir / "throughput_time_to_target.png"))
    forest = plot_forest(groups, ratios, out_dir / "speed_ratios.png")
    if forest:
        paths.append(forest)
    if any(r.costs.get("startup") for g in groups for r in g.runs):
        paths.append(plot_costs(groups, out_dir / "costs.png"))
    if sum(1 for g in groups if any(r.step_losses for r in g.runs)) >= 2:
        paths.append(plot_loss_divergence(groups, out_dir / "loss_divergence.png"))
    if with_confusion:
        if test_set is not None:
            paths.append(plot_digit_grid(with_confusion[0], out_dir / "test_digits.png", *test_set))
        paths.append(plot_confusion(with_confusion, out_dir / "confusion.png"))
    return paths


def plot_curves(groups, keys: tuple[str, str], title: str, ylabel: str, path: Path, scale: float = 1.0) -> Path:
    """Training (solid) and validation (dashed) curves per epoch; mean over seeds with a min-max band."""
    plt = _pyplot()
    colors = _colors(groups)
    fig, ax = plt.subplots(figsize=(8, 4.8))
    markers = "osD^v<>p"
    for rank, group in enumerate(groups):
        # Backends that agree draw on top of each other: thinner lines and distinct markers on
        # later ones keep every curve visible.
        width, marker = max(3.0 - 0.8 * rank, 1.0), markers[rank % len(markers)]
        for key, style in zip(keys, ("-", "--")):
            curves = [[entry[key] for entry in run.history] for run in group.runs if run.history]
            length = min(len(curve) for curve in curves)
            values = np.array([[np.nan if v is None else v for v in curve[:length]] for curve in curves]) * scale
            epochs = np.arange(1, length + 1)
            kind = "train" if style == "-" else "validation"
            ax.plot(epochs, np.nanmean(values, axis=0), style, marker=marker, markersize=4, linewidth=width,
                    color=colors[group.label], label=f"{group.label} ({kind})", alpha=0.9)
            if len(values) > 1:
                ax.fill_between(epochs, np.nanmin(values, axis=0), np.nanmax(values, axis=0),
                                color=colors[group.label], alpha=0.15)
    ax.set(title=f"{title} per epoch" + (" (mean over seeds, band = min–max)" if _several_seeds(groups) else ""),
           xlabel="epoch", ylabel=ylabel)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncols=2 if len(groups) > 3 else 1)
    return _save(fig, path)


def _several_seeds(groups) -> bool:
    return any(len(group.runs) > 1 for group in groups)


DIVERGENCE_MARK = 1e-3  # |Δloss| at which two backends' trajectories are marked as parted
SMOOTHING_STEPS = 50


def first_step_above(differences: np.ndarray, threshold: float = DIVERGENCE_MARK) -> int | None:
    """1-based index of the first step whose difference exceeds `threshold`, or None."""
    above = np.flatnonzero(differences > threshold)
    return int(above[0]) + 1 if len(above) else None


def trailing_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of each value and the window - 1 before it (fewer at the start)."""
    sums = np.cumsum(np.concatenate([[0.0], values]))
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(ends - window, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


def plot_loss_divergence(groups, path: Path) -> Path:
    """|per-step loss difference| of every configuration from the first one, seed by seed, log scale.

    Drawn as a running mean over SMOOTHING_STEPS steps (raw differences jump step to step); a marker shows
    where the raw difference first exceeds DIVERGENCE_MARK.
    """
    plt = _pyplot()
    colors = _colors(groups)
    reference = next(g for g in groups if any(r.step_losses for r in g.runs))
    reference_losses = {run.seed: np.asarray(run.step_losses, np.float64) for run in reference.runs if run.step_losses}
    fig, ax = plt.subplots(figsize=(9, 4.8))
    for group in groups:
        if group is reference:
            continue
        for run in group.runs:
            if not run.step_losses or run.seed not in reference_losses:
                continue
            ours, theirs = np.asarray(run.step_losses, np.float64), reference_losses[run.seed]
            length = min(len(ours), len(theirs))
            differences = np.abs(ours[:length] - theirs[:length])
            smoothed = trailing_mean(differences, SMOOTHING_STEPS)
            steps = np.arange(1, length + 1)
            label = f"{group.label} seed {run.seed}"
            ax.plot(steps, np.maximum(smoothed, ZERO_FLOOR), color=colors[group.label], linewidth=1.5, label=label)
            parted = first_step_above(differences)
            if parted is not None:
                ax.axvline(parted, color=colors[group.label], linestyle=":", linewidth=1)
                ax.annotate(f"> {DIVERGENCE_MARK:.0e} at step {parted}", (parted, DIVERGENCE_MARK), fontsize=7,
                            rotation=90, va="bottom", ha="right", color=colors[group.label])
    ax.axhline(DIVERGENCE_MARK, color="black", linestyle="--", linewidth=1)
    ax.set_yscale("log")
    ax.set(title=f"Per-step training loss: |difference from {reference.label}| (running mean over "
                 f"{SMOOTHING_STEPS} steps; dotted: first step above {DIVERGENCE_MARK:.0e})",
           xlabel="training step (all epochs)", ylabel="|Δloss| (log)")
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncols=2 if len(groups) > 4 else 1)
    return _save(fig, path)


STARTUP_LABELS = {"interpreter_s": "interpreter", "framework_import_s": "framework import",
                  "data_load_s": "data load", "model_build_s": "model build", "first_step_s": "first step (compile)"}


def plot_costs(groups, path: Path) -> Path:
    """Start-up stacked by phase, and peak memory (host RSS; device where there is one), per configuration."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(max(10, 2.4 * len(groups) + 5), 4.8), layout="constrained")
    labels = [g.label for g in groups]
    y = np.arange(len(groups))
    left_edge = np.zeros(len(groups))
    phase_colors = ["#bbbbbb", "#1f77b4", "#2ca02c", "#ff7f0e", "#d62728"]
    for color, (phase, name) in zip(phase_colors, STARTUP_LABELS.items()):
        seconds = np.array([np.median([r.costs["startup"][phase] for r in g.runs
                                       if r.costs.get("startup", {}).get(phase) is not None] or [0.0])
                            for g in groups])
        left.barh(y, seconds, left=left_edge, color=color, label=name)
        left_edge += seconds
    for row, total in enumerate(left_edge):
        left.annotate(f"{total:.1f} s", (total, row), xytext=(4, 0), textcoords="offset points", va="center",
                      fontsize=8)
    left.set_yticks(y, labels)
    left.invert_yaxis()
    left.set(title="Time to first step, by phase (median over runs)", xlabel="seconds from worker spawn")
    left.legend(fontsize=8, loc="lower right")
    left.grid(alpha=0.3, axis="x")
    host = [np.median([r.costs["peak_rss_mib"] for r in g.runs if r.costs.get("peak_rss_mib")] or [0.0])
            for g in groups]
    device = [np.median([r.costs["device_memory"]["peak_bytes"] / 2 ** 20 for r in g.runs
                         if r.costs.get("device_memory")] or [np.nan]) for g in groups]
    width = 0.4 if not all(np.isnan(device)) else 0.8
    bars = right.bar(np.arange(len(groups)), host, width, color="#1f77b4", label="host peak RSS")
    for bar, value in zip(bars, host):
        right.annotate(f"{value:,.0f}", (bar.get_x() + bar.get_width() / 2, value), xytext=(0, 3),
                       textcoords="offset points", ha="center", fontsize=8)
    if not all(np.isnan(device)):
        right.bar(np.arange(len(groups)) + width, np.nan_to_num(device), width, color="#d62728",
                  label="device peak (allocator)")
    right.set_xticks(np.arange(len(groups)), labels, rotation=15, ha="right")
    right.set(title="Peak memory of the worker process" + (" (device memory: n/a on CPU)"
                                                           if all(np.isnan(device)) else ""), ylabel="MiB")
    right.legend(fontsize=8)
    right.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def plot_step_times(groups, path: Path) -> Path:
    """Distribution of steady-state step times per configuration, log scale."""
    plt = _pyplot()
    colors = _colors(groups)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(groups) + 2), 4.8))
    data = [np.concatenate([run.step_ms for run in group.ok_runs if run.step_ms]) for group in groups]
    boxes = ax.boxplot(data, showfliers=True, whis=(5, 95), patch_artist=True,
                       flierprops=dict(markersize=2, alpha=0.3), medianprops=dict(color="black"))
    ax.set_xticks(range(1, len(groups) + 1), [g.label for g in groups], rotation=15, ha="right")
    for patch, group in zip(boxes["boxes"], groups):
        patch.set_facecolor(colors[group.label])
        patch.set_alpha(0.6)
    for index, values in enumerate(data, start=1):
        ax.annotate(f"median {np.median(values):.3f} ms", (index, np.median(values)), xytext=(8, 0),
                    textcoords="offset points", fontsize=8, va="center")
    ax.set_yscale("log")
    ax.set(title="Training step time (steady state; box = quartiles, whiskers = 5th–95th percentile)",
           ylabel="step time (ms, log scale)")
    ax.grid(alpha=0.3, axis="y", which="both")
    return _save(fig, path)


def plot_forest(groups, rows: Sequence, path: Path) -> Path | None:
    """Every speed ratio against the reference with its 95% CI, on a log axis, over the noise band the verdicts
    used: the table's verdict column as a picture. `rows`: (group, its reference group, Ratio) from
    tables.forest_rows. None when no row has a ratio."""
    if not rows:
        return None
    plt = _pyplot()
    colors = _colors(groups)
    fig, ax = plt.subplots(figsize=(9, max(3.2, 1.4 + 0.5 * len(rows))))
    threshold = max(group.threshold for group, _, _ in rows)
    ax.axvspan(1 - threshold, 1 + threshold, color="0.85", zorder=0, label=f"noise band 1 ± {threshold:.3f}")
    ax.axvline(1, color="0.3", linestyle=":", linewidth=1)
    lows, highs = [], []
    for y, (group, baseline, ratio) in enumerate(rows):
        low, high = (ratio.low, ratio.high) if ratio.low is not None else (ratio.estimate, ratio.estimate)
        ax.errorbar(ratio.estimate, y, xerr=[[ratio.estimate - low], [high - ratio.estimate]], fmt="o", capsize=4,
                    color=colors[group.label])
        ax.annotate(str(ratio), (high, y), xytext=(6, 0), textcoords="offset points", va="center", fontsize=8)
        lows.append(low)
        highs.append(high)
    ax.set_xscale("log")
    # Room on the right for the longest label, so nothing is clipped.
    left, right = min(min(lows), 1 - threshold) / 1.15, max(max(highs), 1 + threshold) * 2.2
    ax.set_xlim(left, right)
    from matplotlib.ticker import NullFormatter

    ticks = [tick for tick in (0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 6, 8, 12, 16, 32) if left <= tick <= right]
    ax.set_xticks(ticks, [f"{tick:g}" for tick in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_yticks(range(len(rows)), [f"{group.label} vs {baseline.label}" for group, baseline, _ in rows], fontsize=8)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set(title="Speed ratios with their 95% CIs (> 1: faster than the reference)", xlabel="speed ratio (log)")
    ax.title.set_fontsize(10)
    ax.grid(alpha=0.3, axis="x", which="both")
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def plot_speed(groups, path: Path) -> Path:
    """Throughput and time-to-accuracy per configuration: the median over its runs, with a 95% CI whisker only
    where there are repeated runs (seeds, rounds) to draw one from."""
    from benchmarks.measure.stats import median_interval

    plt = _pyplot()
    colors = _colors(groups)
    fig, (left, right) = plt.subplots(1, 2, figsize=(max(9, 2.2 * len(groups) + 4), 4.8))
    labels = [g.label for g in groups]
    x = np.arange(len(groups))
    target = groups[0].job.target_accuracy
    repeated = False
    for ax, key, title, ylabel in (
            (left, "samples_per_s", "Training throughput (steady state)", "samples / s"),
            (right, "time_to_target_s", f"Time to {target:.0%} validation accuracy", "seconds from training start")):
        medians, whiskers = [], [[], []]
        for group in groups:
            # Throughput is a speed figure: every timed process counts (the timing rounds' too), as in the table.
            runs = group.ok_timed_runs if key == "samples_per_s" else group.ok_runs
            values = [r.timing.get(key) for r in runs if r.timing.get(key) is not None]
            median, low, high = median_interval(values) if values else (0.0, None, None)
            medians.append(median)
            whiskers[0].append(median - low if low is not None else 0.0)
            whiskers[1].append(high - median if high is not None else 0.0)
            repeated |= low is not None
        bars = ax.bar(x, medians, yerr=whiskers if any(map(any, whiskers)) else None, capsize=4,
                      color=[colors[label] for label in labels], alpha=0.8)
        tops = [median + upper for median, upper in zip(medians, whiskers[1])]
        for bar, median, top in zip(bars, medians, tops):
            text = f"{median:,.0f}" if key == "samples_per_s" else (f"{median:.1f} s" if median else "not reached")
            # Above the whisker's cap, so no label sits under one.
            ax.annotate(text, (bar.get_x() + bar.get_width() / 2, top), xytext=(0, 4),
                        textcoords="offset points", ha="center", fontsize=8)
        ax.set_xticks(x, labels, rotation=15, ha="right")
        ax.set(title=title, ylabel=ylabel)
        ax.set_ylim(bottom=0, top=max(max(tops) * 1.18, 1.0))
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle("bars: median over each configuration's runs" + (
        "; whiskers: its 95% bootstrap CI over the runs (seeds and rounds); none for a single run" if repeated
        else " (one run each: no error bars)"), fontsize=9)
    return _save(fig, path)


def plot_digit_grid(group, path: Path, test_images: np.ndarray, test_labels: np.ndarray, count: int = 40) -> Path:
    """Test digits with predicted vs true labels from one run; misclassified ones framed in red."""
    run = group.ok_runs[0]
    predictions = np.asarray(run.test_predictions)
    labels = np.asarray(test_labels[: len(predictions)])
    wrong = np.flatnonzero(predictions != labels)
    # The first images in order, then misclassified ones, so mistakes are always on show.
    shown = list(range(min(count - min(len(wrong), count // 4), len(predictions))))
    shown += [int(i) for i in wrong if i not in shown][: count - len(shown)]
    plt = _pyplot()
    cols = 10
    rows = int(np.ceil(len(shown) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.35))
    for ax in np.ravel(axes):
        ax.axis("off")
    for ax, index in zip(np.ravel(axes), shown):
        ok = predictions[index] == labels[index]
        ax.imshow(test_images[index], cmap="gray_r")
        ax.set_title(f"pred {predictions[index]} / true {labels[index]}", fontsize=7,
                     color="black" if ok else "red", fontweight="normal" if ok else "bold")
        if not ok:
            ax.axis("on")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_edgecolor("red")
                spine.set_linewidth(2)
    accuracy = float(np.mean(predictions == labels))
    fig.suptitle(f"Test digits, {group.label} seed {run.seed}: predicted / true "
                 f"(red = misclassified; {len(wrong)} of {len(labels)} wrong, accuracy {accuracy:.2%})", fontsize=10)
    return _save(fig, path)


def plot_confusion(groups, path: Path) -> Path:
    """One confusion matrix per configuration (summed over seeds), log colour scale, counts printed."""
    plt = _pyplot()
    from matplotlib.colors import LogNorm

    cols = min(len(groups), 3)
    rows = int(np.ceil(len(groups) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5.8 * cols, 4.8 * rows), squeeze=False, layout="constrained")
    for ax in axes.ravel()[len(groups):]:
        ax.axis("off")
    for ax, group in zip(axes.ravel(), groups):
        matrix = np.sum([np.asarray(r.confusion) for r in group.ok_runs if r.confusion], axis=0)
        image = ax.imshow(np.maximum(matrix, 0.5), cmap="Blues", norm=LogNorm(vmin=0.5, vmax=matrix.max()))
        for (true, pred), value in np.ndenumerate(matrix):
            if value:
                ax.text(pred, true, str(value), ha="center", va="center", fontsize=6,
                        color="white" if value > matrix.max() / 8 else "black")
        ax.set(title=f"{group.label} (test, {len(group.ok_runs)} run(s))", xlabel="predicted digit",
               ylabel="true digit", xticks=range(10), yticks=range(10))
        fig.colorbar(image, ax=ax, fraction=0.046, label="count (log)")
    fig.suptitle("Confusion matrices (rows: true, columns: predicted)")
    return _save(fig, path)


def plot_suite(merged: dict, path: Path) -> Path:
    """Train-step time and achieved GFLOP/s against batch size, one line per backend, log-log."""
    plt = _pyplot()
    series: dict[str, list[tuple[int, float, float]]] = {}
    for bench in merged["benchmarks"]:
        info = bench.get("extra_info", {})
        if bench["name"].startswith("test_train_step") and "step_ms" in info:
            series.setdefault(info["backend"], []).append((info["batch_size"], info["step_ms"], info["gflops_per_s"]))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
    for name, points in sorted(series.items()):
        points.sort()
        sizes = [p[0] for p in points]
        left.plot(sizes, [p[1] for p in points], marker="o", label=name)
        right.plot(sizes, [p[2] for p in points], marker="o", label=name)
    for ax, title, ylabel in ((left, "Train step time vs batch size", "ms per step (log)"),
                              (right, "Achieved throughput vs batch size", "GFLOP/s (log, analytic FLOPs)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set(title=title, xlabel="batch size (log2)", ylabel=ylabel)
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    machine = merged.get("machine_info", {}).get("cpu", {}).get("brand_raw") or merged.get("machine_info", {}).get("node", "")
    fig.suptitle(f"pytest-benchmark suite ({machine})", fontsize=10)
    return _save(fig, path)



def plot_verification(backends: dict, tolerances: dict, early_steps: int, out_dir: Path) -> list[Path]:
    """verify's two figures: per-step relative |loss difference| and largest |weight difference| to float64,
    with the float64 tolerances (dashed: the early window's, then the whole run's)."""
    plt = _pyplot()
    paths = []
    for key, early, overall, title, ylabel, name in (
            ("loss_rel_per_step", "early_loss_rel", "loss_rel", "Per-step loss vs the float64 reference",
             "relative |Δloss| (log)", "verify_loss.png"),
            ("weight_diff_per_step", "early_weights", "weights_final",
             "Largest weight difference to the float64 reference", "max |Δw| after the step (log)",
             "verify_weights.png")):
        fig, ax = plt.subplots(figsize=(8, 4.8))
        steps = 1
        for index, (backend, entry) in enumerate(backends.items()):
            values = np.maximum(np.asarray(entry[key], dtype=np.float64), ZERO_FLOOR)
            steps = len(values)
            ax.plot(np.arange(1, steps + 1), values, color=PALETTE[index % len(PALETTE)],
                    linewidth=max(2.5 - 0.3 * index, 1.0), marker="os^Dv<>p"[index % 8], markersize=3,
                    markevery=max(steps // 20, 1), label=f"{backend} ({'PASS' if entry['passed'] else 'FAIL'})")
        window = min(early_steps, steps)
        ax.hlines(tolerances[early]["float64"], 1, window, colors="black", linestyles="--", linewidth=1.2,
                  label=f"tolerance, first {window} steps: {tolerances[early]['float64']:.0e}")
        ax.axhline(tolerances[overall]["float64"], color="gray", linestyle=":", linewidth=1.2,
                   label=f"tolerance, all steps: {tolerances[overall]['float64']:.0e}")
        ax.set_yscale("log")
        ax.set(title=f"{title}\n(float32 tracks float64 to ~1e-6 until a ReLU input near 0 flips and Adam amplifies it; "
                     f"zeros drawn at {ZERO_FLOOR:.0e})", xlabel="training step", ylabel=ylabel)
        ax.title.set_fontsize(10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
        paths.append(_save(fig, out_dir / name))
    return paths


def plot_sweep(results_list: Sequence, out_dir: Path, target_accuracy: float) -> list[Path]:
    """A sweep's four figures: throughput vs batch size, speed-up vs devices, time to target, accuracy over seeds.

    `results_list` holds one Results per trial (one run each); figures with nothing to show are skipped.
    """
    runs = [(results.job, results.runs[0]) for results in results_list
            if results.runs and results.runs[0].status == "ok"]
    if not runs:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    backends = list(dict.fromkeys(job.backend for job, _ in runs))
    color = {backend: PALETTE[index % len(PALETTE)] for index, backend in enumerate(backends)}
    figures = (_plot_sweep_throughput(runs, color, out_dir / "sweep-throughput.png"),
               _plot_sweep_scaling(runs, color, out_dir / "sweep-scaling.png"),
               _plot_sweep_time_to_target(runs, backends, color, target_accuracy, out_dir / "sweep-time-to-target.png"),
               _plot_sweep_accuracy(runs, color, out_dir / "sweep-accuracy.png"))
    return [path for path in figures if path is not None]


def _median_by(runs, key, value) -> dict:
    """{key(job): median of value(job, run)} over the trials where value is known, keys sorted."""
    table: dict = {}
    for job, run in runs:
        measured = value(job, run)
        if measured is not None:
            table.setdefault(key(job), []).append(measured)
    return {k: float(np.median(v)) for k, v in sorted(table.items())}


def _plot_sweep_throughput(runs, color: dict, path: Path) -> Path | None:
    throughput = _median_by(runs, lambda job: (job.backend, job.devices, job.config.batch_size),
                            lambda job, run: run.timing.get("samples_per_s"))
    if not throughput:
        return None
    fig, ax = _pyplot().subplots(figsize=(7, 4.5))
    for backend, devices in dict.fromkeys((b, d) for b, d, _ in throughput):
        points = [(batch, value) for (b, d, batch), value in throughput.items() if (b, d) == (backend, devices)]
        ax.plot(*zip(*points), marker="o", color=color[backend], linestyle="-" if devices == 1 else "--",
                label=backend + (f" ×{devices} devices" if devices > 1 else ""))
    ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="training samples/s (median over trials)",
           title="Throughput against batch size")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _plot_sweep_scaling(runs, color: dict, path: Path) -> Path | None:
    epoch_s = _median_by(runs, lambda job: (job.backend, job.config.batch_size, job.devices),
                         lambda job, run: run.timing.get("epoch_s_median"))
    curves = {}
    for (backend, batch, devices), seconds in epoch_s.items():
        single = epoch_s.get((backend, batch, 1))
        if single:
            curves.setdefault((backend, batch), []).append((devices, single / seconds))
    curves = {key: points for key, points in curves.items() if len(points) > 1}
    if not curves:
        return None
    fig, ax = _pyplot().subplots(figsize=(7, 4.5))
    batches = sorted({batch for _, batch in curves})
    for (backend, batch), points in curves.items():
        style = batches.index(batch)
        ax.plot(*zip(*sorted(points)), marker="os^Dv"[style % 5], linestyle=("-", "--", "-.", ":")[style % 4],
                color=color[backend], label=f"{backend}, batch {batch}")
    most = max(d for points in curves.values() for d, _ in points)
    ax.plot([1, most], [1, most], color="grey", linestyle=":", label="linear")
    ax.set_xticks(sorted({d for points in curves.values() for d, _ in points}))
    ax.set(xlabel="devices", ylabel="speed-up over 1 device (epoch time)", title="Speed-up against device count")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _plot_sweep_time_to_target(runs, backends: list, color: dict, target_accuracy: float, path: Path) -> Path | None:
    reached = {backend: [run.timing["time_to_target_s"] for job, run in runs if job.backend == backend
                         and run.timing.get("time_to_target_s") is not None] for backend in backends}
    if not any(reached.values()):
        return None
    fig, ax = _pyplot().subplots(figsize=(7, 4.5))
    for position, backend in enumerate(backends, start=1):
        values = reached[backend]
        ax.scatter([position] * len(values), values, color=color[backend], alpha=0.8)
        if values:
            ax.hlines(np.median(values), position - 0.25, position + 0.25, color=color[backend])
    ax.set_xticks(range(1, len(backends) + 1), [f"{b}\n({len(reached[b])} reached)" for b in backends])
    ax.set(ylabel="seconds (line: median)", title=f"Time to {target_accuracy:.0%} validation accuracy, per trial")
    return _save(fig, path)


def _plot_sweep_accuracy(runs, color: dict, path: Path) -> Path | None:
    accuracy = {}
    for job, run in runs:
        if run.test:
            accuracy.setdefault((job.backend, job.config.batch_size), []).append(100 * run.test["accuracy"])
    if not accuracy:
        return None
    fig, ax = _pyplot().subplots(figsize=(7, 4.5))
    keys = list(accuracy)
    for position, key in enumerate(keys, start=1):
        ax.scatter([position] * len(accuracy[key]), accuracy[key], color=color[key[0]], alpha=0.8)
        ax.errorbar(position + 0.15, np.mean(accuracy[key]), yerr=np.std(accuracy[key]), fmt="_",
                    color=color[key[0]], capsize=4)
    ax.set_xticks(range(1, len(keys) + 1), [f"{b}\nbatch {batch}" for b, batch in keys], fontsize=8)
    ax.set(ylabel="test accuracy % (bar: mean ± std)", title="Accuracy spread over seeds and trials")
    return _save(fig, path)


def plot_breakdown(breakdowns: Sequence, path: Path) -> Path | None:
    """A stacked bar per profiled run (benchmarks/report/breakdown.py): ms per traced step by op category."""
    from benchmarks.report.breakdown import CATEGORIES

    if not breakdowns:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(figsize=(max(6, 1.4 * len(breakdowns) + 3), 4.5))
    bottoms = np.zeros(len(breakdowns))
    colors = plt.get_cmap("tab10")
    for index, name in enumerate(CATEGORIES):
        values = np.array([b.ms_per_step[name] for b in breakdowns])
        axes.bar([b.run for b in breakdowns], values, bottom=bottoms, label=name, color=colors(index))
        bottoms += values
    axes.set_ylabel("ms per step (traced)")
    axes.set_title("Where a step's time goes (--profile trace)")
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    return _save(fig, path)
