"""`mnist-bench calibrate`'s verdict on a machine: from an A/A/B run, its noise, the rates a protocol gets, the
threshold `run` then judges with, and what size of difference how many rounds tell apart."""

from __future__ import annotations

import numpy as np

from benchmarks.measure import noise, stats
from benchmarks.report.tables import steady_epoch_seconds
from common.results import Results

# Trial lengths judged besides the protocol's own.
TRIAL_ROUNDS = (3, 5, 10, 20, 30)
DIFFERENCES = (0.05, 0.10, 0.15, 0.20, 0.30)
MOST_ROUNDS = 1000  # beyond this a difference is out of reach: said so, not counted


def aab_rounds(results: Results) -> tuple[list, list, list]:
    """(A, A', B): each complete round's steady epoch times of the three backends, in the job's order, rounds in
    order (full and timing rounds alike: each is one process per backend)."""
    by_round: dict[int, dict[str, list[float]]] = {}
    for run in results.runs:
        if run.status == "ok":
            by_round.setdefault(run.round, {})[run.backend] = steady_epoch_seconds(run)
    complete = [by_round[index] for index in sorted(by_round) if len(by_round[index]) == 3]
    a, twin, slowed = results.job.backends
    return [r[a] for r in complete], [r[twin] for r in complete], [r[slowed] for r in complete]


def summarize_calibration(results: Results, slowdown: float, protocol_rounds: int) -> dict:
    """Everything `calibrate` reports and keeps: the noise, the calibrated threshold, the rates of trials of the
    protocol's length (and others), and the rounds each size of difference needs."""
    a, twin, slowed = aab_rounds(results)
    if len(a) < 3:
        raise ValueError(f"{len(a)} complete rounds of A, A' and B; a calibration needs at least 3")
    components = noise.noise_components(a, twin)
    threshold = noise.calibrated_threshold(a, twin)
    lengths = sorted({*TRIAL_ROUNDS, protocol_rounds})
    seconds = [run.costs.get("process_s") for run in results.runs if run.costs.get("process_s")]
    timing = [run for run in results.runs if run.timing_only and run.status == "ok" and run.costs.get("process_s")]
    # What a timing process spends besides its timed epochs (interpreter, framework, data, warm-up epochs), and one
    # timed epoch: the costs `best_timed_epochs` weighs against the two kinds of noise.
    epoch_s = float(np.median([steady_epoch_seconds(run)[0] for run in timing])) if timing else None
    fixed_s = float(np.median([run.costs["process_s"] for run in timing])) - epoch_s if timing else None
    return {
        "created": results.created, "backends": list(results.job.backends), "slowdown": slowdown,
        "rounds": len(a), "protocol_rounds": protocol_rounds, "noise": components.to_dict(), "threshold": threshold,
        "all_rounds": {"aa": stats.speed_ratio(a, twin, threshold).to_dict(),
                       "ab": stats.speed_ratio(a, slowed, threshold).to_dict()},
        "trials": [noise.trial_rates(a, twin, slowed, length, threshold) for length in lengths],
        "rounds_needed": {f"{difference:.2f}": noise.rounds_needed(components.process_sd, difference, threshold)
                          for difference in DIFFERENCES if difference > threshold},
        "detectable_at_protocol": noise.detectable_difference(components.process_sd, protocol_rounds, threshold),
        "process_s_median": float(np.median(seconds)) if seconds else None,
        "timing_process": {"fixed_s": fixed_s, "epoch_s": epoch_s, "best_timed_epochs": noise.best_timed_epochs(
            components.process_sd, components.within_sd, fixed_s, epoch_s) if timing else None},
        "machine": results.environment.get("machine"), "goals": noise.GOALS,
    }


def calibration_text(summary: dict) -> str:
    """The calibration as Markdown (it reads as plain text in a terminal too)."""
    component = summary["noise"]
    lines = [f"# Calibration of {summary['machine']} ({summary['created']})", "",
             f"A/A/B run: {', '.join(summary['backends'])}, {summary['rounds']} complete rounds, each process fresh "
             f"(median {summary['process_s_median'] or 0:.1f} s), B slowed by {summary['slowdown']:.0%} on purpose.", "",
             f"- per-process noise: {component['process_sd']:.3f} [{component['process_sd_low']:.3f}, "
             f"{component['process_sd_high']:.3f}] (s.d. of one process' log epoch time); within a process: "
             f"{component['within_sd']:.3f}",
             f"- noise threshold: {summary['threshold']:.3f} (the A/A ratio over every round reaches this far from 1; "
             "`run` calls ratios within 1 +- it `~`)",
             f"- all rounds: A/A {stats.Ratio(**summary['all_rounds']['aa'])}, A/B "
             f"{stats.Ratio(**summary['all_rounds']['ab'])} (true: {1 / (1 + summary['slowdown']):.3f})",
             f"- the default protocol ({summary['protocol_rounds']} rounds) calls a difference of about "
             f"{summary['detectable_at_protocol']:.0%} in 90% of trials here (normal approximation)",
             *([f"- a timing process: {process['fixed_s']:.1f} s besides its timed epochs of {process['epoch_s']:.2f} s; "
                f"the narrowest interval per minute comes from {process['best_timed_epochs']} timed epoch(s) a process"]
               if (process := summary["timing_process"])["best_timed_epochs"] else []), "",
             f"Trials drawn from the {summary['rounds']} rounds ({noise.TRIALS} per length); goals: A/A called ~ in >= "
             f"{noise.GOALS['aa_called_same']:.0%}, the slowed copy called slower in >= "
             f"{noise.GOALS['ab_detected']:.0%}:", "",
             "| rounds per trial | A/A called ~ | A/B called slower | A/A CI half-width |", "|---|---|---|---|"]
    for row in summary["trials"]:
        if row["trials"]:
            mark = " (the default protocol)" if row["trial_rounds"] == summary["protocol_rounds"] else ""
            lines.append(f"| {row['trial_rounds']}{mark} | {row['aa_called_same']:.0%} | {row['ab_detected']:.0%} "
                         f"| {row['aa_ci_half_width']:.3f} |")
    lines += ["", "Rounds a paired comparison needs here to call a difference in 90% of trials: "
              + ", ".join(f"{float(difference):.0%}: " + (str(rounds) if rounds <= MOST_ROUNDS else f"over {MOST_ROUNDS}")
                          for difference, rounds in summary["rounds_needed"].items())
              + " (a full round and `run --timing-rounds N-1`; normal approximation)."]
    return "\n".join(lines) + "\n"
