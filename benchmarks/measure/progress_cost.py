"""What the progress bar and --step-times cost training: a row's epochs with and without them, in one process.

    python -m benchmarks.measure.progress_cost DATA_DIR OUT_DIR [--backend flax|keras|keras-jax] [--model mlp|cnn]
        [--rounds 16] [--train-limit 12000]

The worker reports a running loss to its parent every 0.25 s (the bar and the per-epoch log line come from those
events). Reading a running loss waits for the step that made it, so each report is one host sync, four a second,
where idiomatic code has none; `--step-times` waits for every step. This benchmark trains the registry's trainer in
one process, one epoch at a time, three ways in a rotated order each round: with the worker's event emitter (writing
to /dev/null), as every run trains; with no progress callback at all, as a user's script; and with `--step-times`.
A round's figure is each way's epoch seconds; progress on / off and step times / progress on come with a paired 95%
bootstrap CI over the rounds (benchmarks/report/stats.py). In one process, so the machine's per-process noise
(benchmarks/measure/aa_ab.py) does not drown a difference of a few percent. Writes
OUT_DIR/progress_cost-BACKEND-MODEL.json and .md. Slow (minutes): a benchmark, never a test.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from benchmarks.harness.worker import make_event_emitter
from benchmarks.measure.fit_overhead import harness_seconds, worker_trainer
from benchmarks.measure.runs import write_outputs
from benchmarks.report.stats import speed_ratio


def main(argv: list[str] | None = None) -> int:
    """Alternate epochs with and without progress in this process and write the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--backend", choices=("flax", "keras", "keras-jax"), default="flax")
    parser.add_argument("--model", choices=("mlp", "cnn"), default="mlp")
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--train-limit", type=int, default=12000)
    args = parser.parse_args(argv)
    job, splits, trainer = worker_trainer(args.backend, args.model, args.data_dir, args.train_limit)
    x, y = splits.x_train, splits.y_train
    ways = {"progress on": (make_event_emitter, False), "progress off": (None, False),
            "--step-times": (make_event_emitter, True)}
    figures = {way: [] for way in ways}
    with open(os.devnull, "w") as null_stream:
        settings = {way: (emitter(null_stream) if emitter else None, clocked) for way, (emitter, clocked) in ways.items()}
        for way in figures:  # compile, and settle each way once, before the rounds
            harness_seconds(trainer, job, x, y, 1, *settings[way])
        order = list(figures)
        for round_index in range(args.rounds):
            shift = round_index % len(order)
            for way in order[shift:] + order[:shift]:
                figures[way].append(harness_seconds(trainer, job, x, y, 1, *settings[way]))
            print(f"round {round_index + 1}: " + ", ".join(f"{way} {values[-1]:.3f} s" for way, values in
                                                          figures.items()), flush=True)
    # speed_ratio(a, b) is a's time over b's: the factor the second way's extra work puts on an epoch.
    costs = {"progress on / off": speed_ratio(figures["progress on"], figures["progress off"]),
             "--step-times / progress on": speed_ratio(figures["--step-times"], figures["progress on"])}
    lines = [f"{args.backend}, model {args.model}: {args.rounds} rounds in one process, one epoch of {len(x)} samples "
             "each way per round, order rotated every round", "",
             "| backend | " + " | ".join(f"epoch s, {way}" for way in figures) + " | "
             + " | ".join(f"{name} time [95% CI]" for name in costs) + " |", "|---|" + "---|" * (len(figures) + len(costs)),
             f"| {args.backend} | " + " | ".join(f"{np.median(values):.3f}" for values in figures.values()) + " | "
             + " | ".join(f"{cost.estimate:.3f} [{cost.low:.3f}, {cost.high:.3f}]" for cost in costs.values()) + " |"]
    write_outputs(args.out_dir, f"progress_cost-{args.backend}-{args.model}", dict(
        backend=args.backend, model=args.model, rounds=args.rounds, samples=len(x), seconds=figures,
        costs={name: dict(estimate=cost.estimate, low=cost.low, high=cost.high) for name, cost in costs.items()}),
        lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
