"""What the progress bar costs training: a reference row's epochs with the worker's progress events and without.

    python -m benchmarks.measure.progress_cost DATA_DIR OUT_DIR [--backend flax|keras|keras-jax] [--model mlp|cnn]
        [--rounds 16] [--train-limit 12000]

The worker reports a running loss to its parent every 0.25 s (the bar and the per-epoch log line come from those
events). Reading a running loss waits for the step that made it, so each report is one host sync, four a second,
where idiomatic code has none. This benchmark trains the registry's trainer in one process, one epoch at a time,
alternately with the worker's event emitter (writing to /dev/null) and with no progress callback at all, the order
swapped every round; a round's figure is each side's epoch seconds, and progress on / off comes with a paired 95%
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

from backends.registry import create_trainer, load_backend, prepare_process
from benchmarks.harness.worker import make_event_emitter
from benchmarks.measure.fit_overhead import harness_seconds
from benchmarks.measure.runs import write_outputs
from benchmarks.report.stats import speed_ratio
from common.config import ExperimentConfig
from common.data import make_splits
from common.job import Job
from common.mnist import load_mnist
from common.workloads import initial_weights


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
    config = ExperimentConfig.for_model(args.model, train_limit=args.train_limit)
    job = Job(backends=(args.backend,), config=config, data_dir=str(args.data_dir), rounds=1)
    prepare_process(job)  # the worker's framework settings
    load_backend(job)
    splits = make_splits(load_mnist(job.data_dir, progress=False), config)
    x, y = splits.x_train, splits.y_train
    trainer = create_trainer(job, {0: initial_weights(config, 0)})
    figures = {"progress on": [], "progress off": []}
    with open(os.devnull, "w") as null_stream:
        emitters = {"progress on": make_event_emitter(null_stream), "progress off": None}
        for way in figures:  # compile, and settle each way once, before the rounds
            harness_seconds(trainer, job, x, y, 1, emitters[way])
        for round_index in range(args.rounds):
            ways = list(figures) if round_index % 2 == 0 else list(figures)[::-1]
            for way in ways:
                figures[way].append(harness_seconds(trainer, job, x, y, 1, emitters[way]))
            print(f"round {round_index + 1}: " + ", ".join(f"{way} {values[-1]:.3f} s" for way, values in
                                                          figures.items()), flush=True)
    # speed_ratio(a, b) is a's time over b's: here the factor progress reporting puts on an epoch.
    cost = speed_ratio(figures["progress on"], figures["progress off"])
    lines = [f"{args.backend}, model {args.model}: {args.rounds} rounds in one process, one epoch of {len(x)} samples "
             "each way per round, order swapped every round", "",
             "| backend | epoch s, progress on | epoch s, progress off | on / off time [95% CI] |", "|---|---|---|---|",
             f"| {args.backend} | {np.median(figures['progress on']):.3f} | {np.median(figures['progress off']):.3f} | "
             f"{cost.estimate:.3f} [{cost.low:.3f}, {cost.high:.3f}] |"]
    write_outputs(args.out_dir, f"progress_cost-{args.backend}-{args.model}", dict(
        backend=args.backend, model=args.model, rounds=args.rounds, samples=len(x), seconds=figures,
        on_over_off=dict(estimate=cost.estimate, low=cost.low, high=cost.high)), lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
