"""Where flax-ffi's speed comes from: flax-fused with each FFI kernel swapped in alone, beside the step floor.

Four fused MLP epochs (batch 32) from the same weights and batch order, timed in turn, round after round,
in one process, with the step floor (`benchmarks.measure.roofline.measure_step_floor`) measured between rounds:
on a shared machine the minutes differ more than the variants do, so each figure is compared only with
figures taken in the same rounds. Shapes, not values, set the time: the data are uniform random rows.

Usage: python -m benchmarks.studies.step_ablation [--rounds 8] [--samples 48000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

from common.config import ExperimentConfig
from common.data import epoch_batches
from common.job import Job
from common.workloads import initial_weights

VARIANTS = ("flax-fused", "FFI products", "FFI Adam", "flax-ffi")
DESCRIPTIONS = {
    "flax-fused": "XLA's products, XLA's Adam (three fusions per parameter)",
    "FFI products": "FFI products (NumPy's BLAS over XLA's pool), XLA's Adam",
    "FFI Adam": "XLA's products, one-pass FFI Adam",
    "flax-ffi": "FFI products and FFI Adam",
}


def build_trainers(config: ExperimentConfig) -> dict:
    """The four variants, each a fused-epoch trainer at seed 0's weights."""
    from backends.base import Placement
    from backends.flax_fused import FfiFlaxTrainer, FusedFlaxTrainer
    from backends.flax_models import MLP

    class FfiProductsOnly(FfiFlaxTrainer):
        apply_gradients = FusedFlaxTrainer.apply_gradients

    class FfiAdamOnly(FfiFlaxTrainer):
        dense_dot_general = FusedFlaxTrainer.dense_dot_general

    weights = initial_weights(config, 0)
    kinds = {"flax-fused": FusedFlaxTrainer, "FFI products": FfiProductsOnly, "FFI Adam": FfiAdamOnly,
             "flax-ffi": FfiFlaxTrainer}
    return {name: kinds[name](config, weights, Placement("cpu", 1), MLP, seed=0) for name in VARIANTS}


def measure(rounds: int, samples: int, config: ExperimentConfig | None = None) -> dict:
    """Per-step seconds of every variant and the step floor, one list entry per round."""
    from benchmarks.measure.roofline import measure_step_floor

    config = config or ExperimentConfig()
    rng = np.random.default_rng(0)
    x = rng.random((samples, 784), dtype=np.float32)
    y = rng.integers(0, 10, samples)
    batches = epoch_batches(samples, config.batch_size, seed=0, epoch=0)
    trainers = build_trainers(config)
    for trainer in trainers.values():
        trainer.train_one_epoch(x, y, batches)  # compiles; untimed
    seconds = {name: [] for name in (*VARIANTS, "step floor")}
    for _ in range(rounds):
        for name, trainer in trainers.items():
            start = time.perf_counter()
            trainer.train_one_epoch(x, y, batches)  # returns once the epoch's losses are on the host
            seconds[name].append((time.perf_counter() - start) / len(batches))
        seconds["step floor"].append(measure_step_floor(config, repeats=3)["step_floor_s"])
    return seconds


def table(seconds: dict) -> str:
    """Best and median per-step time of each variant, and its ratio to the step floor of the same rounds."""
    floors = seconds["step floor"]
    lines = [f"{'variant':14s}  {'best µs':>8s}  {'median µs':>9s}  {'best/best floor':>15s}  "
             f"{'median of round ratios':>22s}  what"]
    for name, values in seconds.items():
        ratios = [value / floor for value, floor in zip(values, floors)]
        lines.append(f"{name:14s}  {min(values) * 1e6:8.0f}  {statistics.median(values) * 1e6:9.0f}  "
                     f"{min(values) / min(floors):15.2f}  {statistics.median(ratios):22.2f}  "
                     f"{DESCRIPTIONS.get(name, 'GEMMs with NumPy BLAS on all threads + Adam traffic')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.studies.step_ablation", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8, help="timed rounds (default: 8)")
    parser.add_argument("--samples", type=int, default=48_000, help="rows per epoch (default: 48000, a full epoch)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.samples < 32:
        print("step_ablation: --rounds must be >= 1 and --samples >= 32", file=sys.stderr)
        return 2
    from backends.registry import prepare_process

    prepare_process(Job(backends=("flax-ffi",)))
    print(table(measure(args.rounds, args.samples)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
