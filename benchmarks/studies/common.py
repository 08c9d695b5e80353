"""What the studies share: their arguments, interleaved rounds in a balanced order, one `mnist-bench run` in a child
process, and their output files."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path

from benchmarks.harness.parent import round_order
from benchmarks.measure.stats import Ratio
from common.atomic import write_text_atomic
from common.results import RunResult, load_results
from common.workloads import MODELS


def study_parser(doc: str, *, rounds: int, epochs: int | None = None, train_limit: int | None = None,
                 model: bool = True) -> argparse.ArgumentParser:
    """DATA_DIR, OUT_DIR and the flags most studies take (--rounds, and --model, --epochs, --train-limit where
    asked for), with the study's docstring as its help."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0], epilog="\n\n".join(doc.split("\n\n")[1:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path, help="the MNIST folder")
    parser.add_argument("out_dir", type=Path, help="where the study's .json and .md go")
    parser.add_argument("--rounds", type=int, default=rounds, help=f"interleaved rounds (default: {rounds})")
    if model:
        parser.add_argument("--model", choices=MODELS, default="mlp", help="workload (default: mlp)")
    if epochs is not None:
        parser.add_argument("--epochs", type=int, default=epochs, help=f"epochs per run (default: {epochs})")
    if train_limit is not None:
        parser.add_argument("--train-limit", type=int, default=train_limit,
                            help=f"training images per run, split 80/20 (default: {train_limit})")
    return parser


def interleaved(names: Sequence[Hashable], rounds: int, measure: Callable[[Hashable], float],
                label: Callable[[Hashable], str] = str) -> dict[Hashable, list[float]]:
    """`measure(name)` for every name in every round, the order changed each round as `mnist-bench run` changes
    its backends (so the machine's drift hits every name alike); name -> one figure per round."""
    figures: dict[Hashable, list[float]] = {name: [] for name in names}
    for round_index in range(rounds):
        for name in round_order(tuple(names), round_index):
            figures[name].append(measure(name))
            print(f"round {round_index + 1}: {label(name)} {figures[name][-1]:.3f}", flush=True)
    return figures


def one_run(backend: str, model: str, data_dir: Path, scratch: Path, *flags: str,
            env: dict[str, str] | None = None) -> RunResult:
    """The first seed's run of `mnist-bench run --backend backend --rounds 1 ... flags` (with `env` added to its
    environment), as results.json holds it; its folder goes under `scratch`. Every seed of a vmapped program shares
    that program's epoch times."""
    out = scratch / f"run-{backend}-{len(list(scratch.iterdir()))}"
    subprocess.run([sys.executable, "-m", "benchmarks.cli", "run", "--backend", backend, "--model", model, "--timing-rounds", "0", "--rounds",
                    "1", "--test-limit", "1000", "--data-dir", str(data_dir), "--out", str(out), "--quiet", *flags],
                   check=True, stdout=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    return load_results(out).runs[0]


def interval(ratio: Ratio, digits: int = 3) -> str:
    """'[low, high]' of a ratio's 95% CI, or why it has none."""
    if ratio.low is None:
        return "(no CI: 1 round)"
    return f"[{ratio.low:.{digits}f}, {ratio.high:.{digits}f}]"


def write_outputs(out_dir: Path, stem: str, data, lines: list[str]) -> None:
    """OUT_DIR/STEM.json (the figures) and OUT_DIR/STEM.md (the table), written atomically; the table printed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / f"{stem}.json", json.dumps(data, indent=1))
    write_text_atomic(out_dir / f"{stem}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
