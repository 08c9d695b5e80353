"""Where two identical processes' difference comes from: an A/A pair under each candidate control, interleaved.

    python -m benchmarks.studies.noise_sources DATA_DIR OUT_DIR [--backend flax] [--model mlp|cnn] [--rounds 16]
        [--epochs 3] [--train-limit 12000] [--control NAME=VAR=VALUE[,VAR=VALUE...] ...]

Two processes of the same `mnist-bench run` (same code, weights and batches) differ by more than the steady epochs
inside one process do, so every round of a comparison buys one per-process draw (docs/results/2026-12-03-aa-ab.md).
This study measures that per-process noise with and without a candidate control applied to the training process
(an environment setting: malloc's arenas, the environment's size, a thread pool's width...). Every round runs, for
each condition, the backend twice (A and A'), all 2 x conditions processes in a rotated order, so drift hits every
condition alike. A process' figure is its steady epoch median; a condition's noise is the standard deviation of the
per-round log ratio log(A / A'), with a 95% bootstrap CI over the rounds, and each control is set against the
baseline (no control) as the ratio of the two, with its CI; so is its speed (the baseline's epoch time over the
control's, paired by round, as `run` prints it), since a control that changes the speed changes what is measured.
A control that narrows the noise is worth keeping only where a user's own script would have it too (issue "Verdicts
in minutes"). Writes OUT_DIR/noise_sources-BACKEND-
MODEL.json and .md. Slow at its defaults (about 10 s a process); the tests run it in a tiny mode.
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.measure.stats import BOOTSTRAP_SAMPLES, CONFIDENCE, NOISE_THRESHOLD, speed_ratio
from benchmarks.report.tables import steady_epoch_seconds
from benchmarks.studies.common import interleaved, one_run, study_parser, write_outputs

BASELINE = "baseline"
# Candidates that a process' environment can switch: glibc's malloc arenas (one per thread by default, so the
# heap's layout follows thread timing); the environment's size, which moves the initial stack (Mytkowicz et al.,
# 2009); glibc's trimming and mmap thresholds, which move large arrays between the heap and fresh mappings.
CONTROLS = {
    "malloc-arenas-1": {"MALLOC_ARENA_MAX": "1"},
    "environment+4KiB": {"MNIST_BENCH_PADDING": "x" * 4096},
    "malloc-no-mmap-no-trim": {"MALLOC_MMAP_THRESHOLD_": str(2 ** 30), "MALLOC_TRIM_THRESHOLD_": str(2 ** 30)},
}


def steal_seconds() -> float | None:
    """CPU time the hypervisor gave other guests so far (all vCPUs, /proc/stat's steal column); None off Linux."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = stat.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def children_usage() -> dict[str, float]:
    """What this process' finished children (and theirs) used so far: CPU seconds, page faults, context switches."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"user_s": usage.ru_utime, "system_s": usage.ru_stime, "minor_faults": usage.ru_minflt,
            "major_faults": usage.ru_majflt, "voluntary_switches": usage.ru_nvcsw,
            "involuntary_switches": usage.ru_nivcsw}


def parse_control(text: str) -> tuple[str, dict[str, str]]:
    """'NAME=VAR=VALUE,VAR=VALUE' -> (NAME, {VAR: VALUE}); a known NAME alone takes CONTROLS' settings."""
    name, _, settings = text.partition("=")
    if not settings:
        if name not in CONTROLS:
            raise SystemExit(f"noise_sources: --control {text}: unknown; give NAME=VAR=VALUE or one of "
                             f"{', '.join(CONTROLS)}")
        return name, CONTROLS[name]
    return name, dict(setting.split("=", 1) for setting in settings.split(","))


def percentile_interval(draws: np.ndarray) -> tuple[float, float]:
    """The 95% percentile interval of bootstrap draws."""
    tail = (1 - CONFIDENCE) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    return float(low), float(high)


def log_ratio_spread(a: list[float], b: list[float], seed: int = 0) -> tuple[float, float, float, np.ndarray]:
    """The standard deviation of the per-round log(a / b), its 95% bootstrap CI, and the bootstrap draws (the same
    rounds drawn for every call of one length: the draws of two conditions are paired by round)."""
    differences = np.log(np.asarray(a)) - np.log(np.asarray(b))
    rng = np.random.default_rng(seed)
    draws = differences[rng.integers(0, len(differences), size=(BOOTSTRAP_SAMPLES, len(differences)))].std(axis=1,
                                                                                                          ddof=1)
    return float(differences.std(ddof=1)), *percentile_interval(draws), draws


def main(argv: list[str] | None = None) -> int:
    """Run the interleaved A/A pairs under every condition and write the table."""
    parser = study_parser(__doc__, rounds=16, epochs=3, train_limit=12000)
    parser.add_argument("--backend", default="flax")
    parser.add_argument("--control", action="append", default=None,
                        help="a candidate: NAME=VAR=VALUE[,VAR=VALUE...] or one of " + ", ".join(CONTROLS)
                             + " (repeat; default: all of those)")
    args = parser.parse_args(argv)
    if args.rounds < 2:
        parser.error("--rounds: at least 2, for a spread")
    conditions = {BASELINE: {}, **dict(parse_control(text) for text in (args.control or CONTROLS))}
    processes = [(name, twin) for name in conditions for twin in ("A", "A'")]
    # Steal time over each process' life: whether the slow processes are the ones the hypervisor held back.
    steal: dict[tuple[str, str], list[float | None]] = {process: [] for process in processes}
    # And what each process tree (the run and its worker) used: CPU time, page faults, context switches.
    usage: dict[tuple[str, str], list[dict[str, float]]] = {process: [] for process in processes}

    def steady_median(process) -> float:
        name, _ = process
        before, used_before = steal_seconds(), children_usage()
        run = one_run(args.backend, args.model, args.data_dir, Path(scratch), "--no-floor", "--epochs",
                      str(args.epochs), "--train-limit", str(args.train_limit), env=conditions[name])
        after, used_after = steal_seconds(), children_usage()
        usage[process].append({key: round(used_after[key] - used_before[key], 3) for key in used_after})
        steal[process].append(None if before is None or after is None else round(after - before, 3))
        return float(np.median(steady_epoch_seconds(run)))

    with tempfile.TemporaryDirectory(prefix="noise-sources-") as scratch:
        figures = interleaved(processes, args.rounds, steady_median, label=lambda process: f"{process[0]} {process[1]} s")
    spreads = {name: log_ratio_spread(figures[(name, "A")], figures[(name, "A'")]) for name in conditions}
    rows, lines = [], [f"{args.backend}, model {args.model}: {args.rounds} rounds, each condition's A and A' in every "
                       f"round (rotated), {args.epochs} epochs of {args.train_limit} samples' split per process; "
                       "figure per process: its steady epoch median", "",
                       "| condition | settings | epoch s (median) | s.d. of log(A/A') [95% CI] | vs baseline [95% CI] "
                       "| speed vs baseline [95% CI] |", "|---|---|---|---|---|---|"]
    for name, settings in conditions.items():
        spread, low, high, draws = spreads[name]
        ratio_low, ratio_high = percentile_interval(draws / spreads[BASELINE][3])
        epoch_s = float(np.median(figures[(name, "A")] + figures[(name, "A'")]))
        speed = speed_ratio([list(pair) for pair in zip(figures[(BASELINE, "A")], figures[(BASELINE, "A'")])],
                            [list(pair) for pair in zip(figures[(name, "A")], figures[(name, "A'")])], NOISE_THRESHOLD)
        rows.append(dict(condition=name, settings={key: value if len(value) < 40 else f"{len(value)} characters"
                                                   for key, value in settings.items()}, epoch_s=epoch_s,
                         sd_log_ratio=spread, low=low, high=high, versus_baseline=spread / spreads[BASELINE][0],
                         versus_low=ratio_low, versus_high=ratio_high, speed=speed.to_dict(),
                         a_s=figures[(name, "A")], a_twin_s=figures[(name, "A'")],
                         a_steal_s=steal[(name, "A")], a_twin_steal_s=steal[(name, "A'")],
                         a_usage=usage[(name, "A")], a_twin_usage=usage[(name, "A'")]))
        shown = ", ".join(f"{key}={value}" for key, value in rows[-1]["settings"].items()) or "(none)"
        cell = "1 (itself)" if name == BASELINE else f"{rows[-1]['versus_baseline']:.2f} [{ratio_low:.2f}, {ratio_high:.2f}]"
        lines.append(f"| {name} | {shown} | {epoch_s:.3f} | {spread:.3f} [{low:.3f}, {high:.3f}] | {cell} | "
                     + ("1.00x (itself) |" if name == BASELINE else f"{speed} |"))
    write_outputs(args.out_dir, f"noise_sources-{args.backend}-{args.model}",
                  dict(backend=args.backend, model=args.model, rounds=args.rounds, epochs=args.epochs,
                       train_limit=args.train_limit, rows=rows), lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
