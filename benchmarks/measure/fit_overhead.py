"""What the keras rows' per-epoch `fit` calls cost beyond one `fit(epochs=N)`: measured per call and per step.

    python -m benchmarks.measure.fit_overhead DATA_DIR OUT_DIR [--backend keras|keras-jax] [--model mlp|cnn]
        [--rounds 12] [--repeats 15] [--long-steps 41]

The harness trains a keras row one `model.fit` call per epoch (it validates, times and checkpoints between
epochs) with a callback that records each step's loss, where a user's script makes one `fit(epochs=N)`. Whole
epochs cannot tell the two apart on a machine whose epochs drift 10-50% from one to the next (interleaved whole
epochs of both gave ratios from 0.24 to 2.0). What differs is a fixed cost per `fit` call and a cost per step,
both small, so they are measured directly on short epochs, where a median over many repeats is steady:

- `harness`: the registry's trainer as the worker drives it, one `train_epoch` call per epoch, with the progress
  events the worker sends its parent (to /dev/null here): one call's seconds;
- `plain fit`: the tutorial's `model.fit(x, y, batch_size, epochs=R, shuffle=True)` on the same data: the median
  of its epochs' seconds (epoch hooks only).

Each at S = 1 and S = `--long-steps` steps per epoch, every round in a rotated order; per round, the excess of
the harness' median over plain fit's at each S gives a cost per call (S = 1, less one step's share) and a cost
per step (the slope), set against the harness' steady full epoch (its steps times its per-step time) as the
share of an epoch that the harness adds, with a 95% bootstrap CI over the rounds (benchmarks/report/stats.py).
Writes OUT_DIR/fit_overhead-BACKEND-MODEL.json and .md. Slow (minutes): a benchmark, never a test.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from backends.registry import create_trainer, load_backend, model_builder, prepare_process
from benchmarks.harness.worker import make_event_emitter
from benchmarks.measure.runs import write_outputs
from benchmarks.report.stats import median_interval
from common.config import ExperimentConfig
from common.data import epoch_batches, make_splits, one_hot, steps_per_epoch
from common.job import Job
from common.mnist import load_mnist
from common.weights import as_layer_list
from common.workloads import initial_weights, model_inputs, weight_shapes


def plain_fit_seconds(model, job: Job, x: np.ndarray, y: np.ndarray, epochs: int) -> float:
    """The median epoch of one tutorial-style `fit(epochs=...)` over x, y (its first, compiling epoch left out)."""
    import keras

    class EpochClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.start)

    clock = EpochClock()
    model.fit(model_inputs(job.config, x), one_hot(y), batch_size=job.config.batch_size, epochs=epochs + 1,
              shuffle=True, verbose=0, callbacks=[clock])
    return float(np.median(clock.seconds[1:]))


def worker_trainer(backend: str, model: str, data_dir: Path, train_limit: int | None = None):
    """(job, splits, trainer) as a worker sets them up for `backend` training `model` (seed 0), in this process."""
    config = ExperimentConfig.for_model(model, train_limit=train_limit)
    job = Job(backends=(backend,), config=config, data_dir=str(data_dir), rounds=1)
    prepare_process(job)  # the worker's framework settings, before the framework's import
    load_backend(job)
    splits = make_splits(load_mnist(job.data_dir, progress=False), config)
    return job, splits, create_trainer(job, {0: initial_weights(config, 0)})


def harness_seconds(trainer, job: Job, x: np.ndarray, y: np.ndarray, calls: int, emit, time_steps: bool = False) -> float:
    """The median of `calls` harness epochs over x, y, each clocked around its one trainer call; `emit` gets the
    progress events the worker sends its parent (None: no progress reporting at all); `time_steps` as --step-times."""
    seconds = []
    for call in range(calls):
        batches = epoch_batches(len(x), job.config.batch_size, 0, call)

        def on_step(step, loss, accuracy, steps=len(batches)):
            emit("step", dict(epoch=call + 1, step=step + 1, steps=steps, loss=loss, accuracy=accuracy))

        start = time.perf_counter()
        trainer.train_epoch(x, y, [batches], on_step if emit is not None else None, time_steps)
        seconds.append(time.perf_counter() - start)
    return float(np.median(seconds))


def main(argv: list[str] | None = None) -> int:
    """Run the rotated rounds in this process and write the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--backend", choices=("keras", "keras-jax"), default="keras")
    parser.add_argument("--model", choices=("mlp", "cnn"), default="mlp")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=15, help="epochs (or calls) per measurement")
    parser.add_argument("--long-steps", type=int, default=41)
    args = parser.parse_args(argv)
    job, splits, trainer = worker_trainer(args.backend, args.model, args.data_dir)  # for both ways alike
    from backends.keras_models import build_reference_model  # after prepare_process: Keras fixes its backend at import

    config = job.config
    batch = config.batch_size
    sizes = {"short": batch, "long": args.long_steps * batch}  # S = 1 and S = long-steps full batches
    model = build_reference_model(config, model_builder(job), "auto", 1, 0)
    model.set_weights(as_layer_list(initial_weights(config, 0), weight_shapes(config)))
    figures = {(way, size): [] for way in ("harness", "plain fit") for size in sizes}
    with open(os.devnull, "w") as null_stream:
        emit = make_event_emitter(null_stream)
        for size in sizes.values():  # compile both ways at both shapes before the rounds
            harness_seconds(trainer, job, splits.x_train[:size], splits.y_train[:size], 1, emit)
            plain_fit_seconds(model, job, splits.x_train[:size], splits.y_train[:size], 1)
        order = list(figures)
        for round_index in range(args.rounds):
            shift = round_index % len(order)
            for way, size in order[shift:] + order[:shift]:
                x, y = splits.x_train[:sizes[size]], splits.y_train[:sizes[size]]
                figures[(way, size)].append(harness_seconds(trainer, job, x, y, args.repeats, emit) if way == "harness"
                                            else plain_fit_seconds(model, job, x, y, args.repeats))
            print(f"round {round_index + 1}: " + ", ".join(f"{way} S={sizes[size] // batch} {values[-1] * 1e3:.1f} ms"
                                                           for (way, size), values in figures.items()), flush=True)
        # The steady full epoch the costs are set against: the harness' own, as the worker trains it.
        full = harness_seconds(trainer, job, splits.x_train, splits.y_train, 2, emit)
    steps_long, full_steps = args.long_steps, steps_per_epoch(len(splits.x_train), batch)
    excess = {size: np.array(figures[("harness", size)]) - np.array(figures[("plain fit", size)]) for size in sizes}
    per_step = (excess["long"] - excess["short"]) / (steps_long - 1)
    per_call = excess["short"] - per_step
    share = (per_call + full_steps * per_step) / full
    cells = {}
    for name, values, scale, unit in (("cost per fit call", per_call, 1e3, "ms"), ("cost per step", per_step, 1e6, "µs"),
                                      ("share of a full epoch", share, 100, "%")):
        middle, low, high = median_interval(list(values * scale))
        cells[name] = dict(median=middle, low=low, high=high, unit=unit, rounds=list(values * scale))
    lines = [f"{args.backend}, model {args.model}: {args.rounds} rounds in one process, {args.repeats} epochs per "
             f"measurement at 1 and {steps_long} steps of batch {batch}; full epoch {full:.3f} s ({full_steps} steps)",
             "", "| harness beyond plain fit | median [95% CI] |", "|---|---|"]
    lines += [f"| {name} | {cell['median']:.2f} [{cell['low']:.2f}, {cell['high']:.2f}] {cell['unit']} |"
              for name, cell in cells.items()]
    write_outputs(args.out_dir, f"fit_overhead-{args.backend}-{args.model}", dict(
        backend=args.backend, model=args.model, rounds=args.rounds, repeats=args.repeats, long_steps=steps_long,
        full_epoch_s=full, full_steps=full_steps, costs=cells,
        seconds={f"{way} S={sizes[size] // batch}": values for (way, size), values in figures.items()}), lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
