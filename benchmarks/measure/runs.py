"""What the benchmarks that drive `mnist-bench run` share: one run in a child process, and their output files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from common.atomic import write_text_atomic


def one_run(backend: str, model: str, data_dir: Path, scratch: Path, *flags: str) -> dict:
    """The first seed's run of `mnist-bench run --backend backend --rounds 1 ... flags`, as results.json holds it; its
    folder goes under `scratch`. Every seed of a vmapped program shares that program's epoch times."""
    out = scratch / f"run-{backend}-{len(list(scratch.iterdir()))}"
    subprocess.run([sys.executable, "-m", "benchmarks.cli", "run", "--backend", backend, "--model", model, "--rounds",
                    "1", "--test-limit", "1000", "--data-dir", str(data_dir), "--out", str(out), "--quiet", *flags],
                   check=True, stdout=subprocess.DEVNULL)
    return json.loads((out / "results.json").read_text())["runs"][0]


def write_outputs(out_dir: Path, stem: str, data, lines: list[str]) -> None:
    """OUT_DIR/STEM.json (the figures) and OUT_DIR/STEM.md (the table), written atomically; the table printed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / f"{stem}.json", json.dumps(data, indent=1))
    write_text_atomic(out_dir / f"{stem}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
