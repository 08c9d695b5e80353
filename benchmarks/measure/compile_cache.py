"""What compiling costs a second run: start-up with JAX's persistent compilation cache cold and warm.

    python -m benchmarks.measure.compile_cache DATA_DIR OUT_DIR [--backends flax,flax-fused,keras-jax]
        [--model mlp|cnn] [--rounds 3]

Each round runs every backend twice through `mnist-bench run --compile-cache DIR` (one epoch, no floor): once
with DIR new and empty (cold: every program compiled, then written to DIR) and once more with the same DIR
(warm: every program read back), the backends in a rotated order. Figures per run from results.json: the first
step (trace + compile + run, or load + run), the whole start-up (spawn to first step) and the epoch-1 excess
over a steady epoch (`compile s`); warm over cold comes with a paired 95% bootstrap CI over the rounds. Writes
OUT_DIR/compile_cache-MODEL.json and .md. Slow (minutes): a benchmark, never a test.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.measure.runs import one_run, write_outputs
from benchmarks.report.stats import speed_ratio

FIGURES = {"first step s": lambda run: run["costs"]["startup"]["first_step_s"],
           "start-up s": lambda run: run["costs"]["time_to_first_step_s"]}


def cached_run(backend: str, cache: Path, args, scratch: Path) -> dict:
    """One run of `backend` with `cache` as its compilation cache: its results.json run."""
    return one_run(backend, args.model, args.data_dir, scratch, "--compile-cache", str(cache), "--no-floor",
                   "--epochs", "1", "--train-limit", str(args.train_limit))


def main(argv: list[str] | None = None) -> int:
    """Run the rounds and write the cold/warm table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--backends", default="flax,flax-fused,keras-jax")
    parser.add_argument("--model", choices=("mlp", "cnn"), default="mlp")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--train-limit", type=int, default=3200)
    args = parser.parse_args(argv)
    backends = args.backends.split(",")
    values = {(backend, state, figure): [] for backend in backends for state in ("cold", "warm") for figure in FIGURES}
    with tempfile.TemporaryDirectory(prefix="compile-cache-") as scratch:
        for round_index in range(args.rounds):
            shift = round_index % len(backends)
            for backend in backends[shift:] + backends[:shift]:
                cache = Path(scratch) / f"cache-{backend}-{round_index}"  # new and empty: cold
                runs = {"cold": cached_run(backend, cache, args, Path(scratch)),
                        "warm": cached_run(backend, cache, args, Path(scratch))}
                for state, run in runs.items():
                    for figure, read in FIGURES.items():
                        values[(backend, state, figure)].append(read(run))
                print(f"round {round_index + 1}: {backend} first step cold {runs['cold']['costs']['startup']['first_step_s']:.2f} s, "
                      f"warm {runs['warm']['costs']['startup']['first_step_s']:.2f} s", flush=True)
    lines = [f"model {args.model}: {args.rounds} rounds, each backend cold (an empty cache folder) then warm (the same "
             "folder), one epoch each", "",
             "| backend | first step s, cold | warm | warm / cold [95% CI] | start-up s, cold | warm |",
             "|---|---|---|---|---|---|"]
    rows = []
    for backend in backends:
        cold, warm = values[(backend, "cold", "first step s")], values[(backend, "warm", "first step s")]
        ratio = speed_ratio(warm, cold)  # warm's time over cold's
        rows.append(dict(backend=backend, **{f"{state} {figure}": values[(backend, state, figure)]
                                             for state in ("cold", "warm") for figure in FIGURES},
                         warm_over_cold=ratio.estimate, low=ratio.low, high=ratio.high))
        interval = f"[{ratio.low:.2f}, {ratio.high:.2f}]" if ratio.low is not None else "(no CI: 1 round)"
        lines.append(f"| {backend} | {np.median(cold):.2f} | {np.median(warm):.2f} | {ratio.estimate:.2f} {interval} | "
                     f"{np.median(values[(backend, 'cold', 'start-up s')]):.2f} | "
                     f"{np.median(values[(backend, 'warm', 'start-up s')]):.2f} |")
    write_outputs(args.out_dir, f"compile_cache-{args.model}", rows, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
