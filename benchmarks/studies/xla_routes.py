"""Which XLA kernel route trains a backend fastest on this machine: one `mnist-bench run` per route per round.

    python -m benchmarks.studies.xla_routes DATA_DIR OUT_DIR [--backend flax-fused] [--model mlp|cnn]
        [--rounds 4] [--epochs 3] [--train-limit 12000] [--seeds 0] [--route FLAGS ...]

XLA_FLAGS are read once per process, so each route trains in its own `mnist-bench run --xla-flags=...` (a fresh
worker, no floor measured), the routes in a rotated order each round so that the machine's drift hits them alike.
A run's figure is its steady epoch median; every route is set against the first (XLA's defaults unless --route
says otherwise) as a paired ratio with a 95% bootstrap CI over the rounds. The winner becomes the backend's route
(`BackendSpec.xla_routes`) only after `verify` passes under it. Writes OUT_DIR/xla_routes-BACKEND-MODEL.json and
.md. Slow at its defaults (minutes); the tests run it in a tiny mode.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from backends.routes import CPU_ROUTES
from benchmarks.measure.stats import speed_ratio
from benchmarks.report.tables import steady_epoch_seconds
from benchmarks.studies.common import interleaved, one_run, study_parser, write_outputs

ROUTES = tuple(CPU_ROUTES)


def route_run(route: str, args, scratch: Path) -> list[float]:
    """The steady epochs' seconds of one run of the backend under `route`."""
    run = one_run(args.backend, args.model, args.data_dir, scratch, f"--xla-flags={route}", "--no-floor", "--epochs",
                  str(args.epochs), "--train-limit", str(args.train_limit), "--seeds", args.seeds)
    return steady_epoch_seconds(run)


def main(argv: list[str] | None = None) -> int:
    """Run the interleaved rounds and write the table."""
    parser = study_parser(__doc__, rounds=4, epochs=3, train_limit=12000)
    parser.add_argument("--backend", default="flax-fused")
    parser.add_argument("--seeds", default="0", help="the run's seeds (flax-vmap trains them in one program)")
    parser.add_argument("--route", action="append", default=None,
                        help="XLA flags of one route (repeat; the first is the baseline); default: " + " | ".join(
                            repr(route) for route in ROUTES))
    args = parser.parse_args(argv)
    routes = tuple(args.route) if args.route else ROUTES
    blocks: dict[str, list[list[float]]] = {route: [] for route in routes}

    def steady_median(route: str) -> float:
        blocks[route].append(route_run(route, args, Path(scratch)))
        return float(np.median(blocks[route][-1]))

    with tempfile.TemporaryDirectory(prefix="xla-routes-") as scratch:
        interleaved(routes, args.rounds, steady_median, label=lambda route: f"{route or '(XLA defaults)'} s/epoch")
    lines = [f"{args.backend}, model {args.model}, seeds {args.seeds}: {args.rounds} rounds, {args.epochs} epochs of {args.train_limit} "
             "samples' split per run; figure: the run's steady epoch median", "",
             f"| XLA flags | epoch s (median of rounds) | speed vs {routes[0] or 'XLA defaults'} [95% CI] |",
             "|---|---|---|"]
    rows = []
    for route in routes:
        ratio = speed_ratio(blocks[routes[0]], blocks[route])
        rows.append(dict(route=route, epoch_s=[float(np.median(block)) for block in blocks[route]],
                         speed=ratio.estimate, low=ratio.low, high=ratio.high, verdict=ratio.verdict))
        cell = ratio if route != routes[0] else "1.00x (the baseline)"  # a route against itself has no interval
        lines.append(f"| `{route or '(XLA defaults)'}` | {np.median(rows[-1]['epoch_s']):.3f} | {cell} |")
    write_outputs(args.out_dir, f"xla_routes-{args.backend}-{args.model}",
                  dict(backend=args.backend, model=args.model, seeds=args.seeds, rounds=args.rounds, rows=rows), lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
