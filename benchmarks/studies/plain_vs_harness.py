"""What the harness costs: each reference row against the plain script a user of its framework would write.

    python -m benchmarks.studies.plain_vs_harness DATA_DIR OUT_DIR [--model mlp|cnn] [--rounds 5] [--epochs 4]
        [--train-limit 12000] [--backends keras,keras-jax,flax] [--goal-only]

Every round runs, in a rotated order, each pair's harness row (`mnist-bench run --backend B`, a fresh process)
and its plain scripts (benchmarks/studies/plain: `keras_fit.py` on TensorFlow or JAX, `flax_loop.py` in Optax's style,
which the flax row implements, and in the Flax guide's functional and the tutorial's nnx.jit styles), so the machine's
drift hits both alike. A process' figure is the median of its epochs after the first (compiling) one, training
only (validation excluded on both sides); the ratio harness/plain comes with a paired 95% bootstrap CI over the
rounds (benchmarks/measure/stats.py). Goal: the CI inside [0.95, 1.05]. Writes OUT_DIR/plain_vs_harness.json and
.md. Slow at its defaults (minutes); the tests run it in a tiny mode.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.measure.stats import FASTER, SLOWER, speed_ratio
from benchmarks.studies.common import interleaved, interval, one_run, study_parser, write_outputs

PLAIN = Path(__file__).resolve().parent / "plain"
# backend row -> its plain scripts as (name, script, environment, arguments); the first is the idiom the row
# implements (the goal applies to it), a second shows what another common form of user code gets.
PLAIN_SCRIPTS = {
    "keras": [("keras_fit.py", "keras_fit.py", {"KERAS_BACKEND": "tensorflow"}, [])],
    "keras-jax": [("keras_fit.py", "keras_fit.py", {"KERAS_BACKEND": "jax"}, [])],
    # The flax row is Optax's idiom (params and optimizer state through a jax.jit step); the Flax guide's functional
    # loop over the split (model, optimizer, metrics) and the tutorial's nnx.jit are the other common forms.
    "flax": [("flax_loop.py --style optax", "flax_loop.py", {}, ["--style", "optax"]),
             ("flax_loop.py --style functional", "flax_loop.py", {}, ["--style", "functional"]),
             ("flax_loop.py --style tutorial", "flax_loop.py", {}, ["--style", "tutorial"])],
}
GOAL = (0.95, 1.05)
# speed_ratio(harness, plain) says how the plain script fared against the harness; the table speaks of the harness.
HARNESS_VERDICT = {FASTER: "harness slower", SLOWER: "harness faster"}


def harness_epochs(backend: str, args, scratch: Path) -> list[float]:
    """Training seconds of each epoch of one `mnist-bench run` of `backend`."""
    run = one_run(backend, args.model, args.data_dir, scratch, "--no-floor", "--epochs", str(args.epochs),
                  "--train-limit", str(args.train_limit))
    return [entry["epoch_s"] for entry in run.history]


def plain_epochs(backend: str, variant: int, args, scratch: Path) -> list[float]:
    """Training seconds of each epoch of `backend`'s plain script number `variant`."""
    _, script, environment, arguments = PLAIN_SCRIPTS[backend][variant]
    out = scratch / f"plain-{backend}-{len(list(scratch.iterdir()))}.json"
    subprocess.run([sys.executable, str(PLAIN / script), str(args.data_dir), str(out), "--model", args.model,
                    "--epochs", str(args.epochs), "--train-limit", str(args.train_limit), *arguments], check=True,
                   env={**os.environ, **environment}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads(out.read_text())["epoch_s"]


def steady(epochs: list[float]) -> float:
    """A process' figure: the median of its epochs after the first."""
    return float(np.median(epochs[1:]))


def main(argv: list[str] | None = None) -> int:
    """Run the interleaved rounds and write the table."""
    parser = study_parser(__doc__, rounds=5, epochs=4, train_limit=12000)
    parser.add_argument("--backends", default=",".join(PLAIN_SCRIPTS))
    parser.add_argument("--goal-only", action="store_true",
                        help="only each row's own idiom (the one the goal applies to), not the other common forms")
    args = parser.parse_args(argv)
    backends = args.backends.split(",")
    # A run: (backend, None) is the harness row, (backend, i) its plain script i.
    runs = [(backend, side) for backend in backends
            for side in (None, *range(1 if args.goal_only else len(PLAIN_SCRIPTS[backend])))]

    def label(run) -> str:
        backend, side = run
        return f"{backend} {'harness' if side is None else PLAIN_SCRIPTS[backend][side][0]} s/epoch"

    with tempfile.TemporaryDirectory(prefix="plain-vs-harness-") as scratch:
        figures = interleaved(runs, args.rounds, lambda run: steady(
            harness_epochs(run[0], args, Path(scratch)) if run[1] is None else
            plain_epochs(run[0], run[1], args, Path(scratch))), label)
    rows, ratios = [], []
    for backend, side in runs:
        if side is None:
            continue
        ratio = speed_ratio(figures[(backend, None)], figures[(backend, side)])
        ratios.append(ratio)
        inside = ratio.low is not None and GOAL[0] <= ratio.low and ratio.high <= GOAL[1]
        rows.append(dict(backend=backend, plain=PLAIN_SCRIPTS[backend][side][0], goal_applies=side == 0,
                         harness_epoch_s=figures[(backend, None)], plain_epoch_s=figures[(backend, side)],
                         ratio=ratio.estimate, low=ratio.low, high=ratio.high,
                         verdict=HARNESS_VERDICT.get(ratio.verdict, ratio.verdict),
                         within_goal=inside))
    lines = [f"model {args.model}, {args.rounds} rounds, {args.epochs} epochs of {args.train_limit} samples' "
             "training split; figure per process: median epoch after the first",
             "", "| row | plain script | harness epoch s | plain epoch s | harness / plain time [95% CI] | verdict | within 5% |",
             "|---|---|---|---|---|---|---|"]
    for row, ratio in zip(rows, ratios):
        lines.append(f"| {row['backend']} | {row['plain']} | {np.median(row['harness_epoch_s']):.3f} | "
                     f"{np.median(row['plain_epoch_s']):.3f} | {row['ratio']:.3f} {interval(ratio)} | {row['verdict']} | "
                     + (f"{'yes' if row['within_goal'] else 'no'} |" if row["goal_applies"] else "(another idiom) |"))
    write_outputs(args.out_dir, f"plain_vs_harness-{args.model}", rows, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
