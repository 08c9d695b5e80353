"""Soak: many `mnist-bench run`s at once on one output root and one cold data cache, repeated.

Every round starts `--runs` short runs together (no `--out`: they name their own folders, as a script or a
CI matrix would) against a fresh, empty cache, and checks that every run's results were kept, that the
cache holds one decoded entry, and that no run failed. Not a test: it takes minutes; the figures go to
docs/results/.

Usage: python -m benchmarks.measure.soak [--runs 8] [--rounds 10] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common.results import RESULTS_FILE, load_results

RUN_FLAGS = ("--backend", "flax", "--epochs", "1", "--train-limit", "640", "--test-limit", "200", "--quiet")


def soak_round(runs: int, data_dir: str | None, work: Path) -> dict:
    """One round: `runs` runs started together in `work`; what was kept and what went wrong."""
    cache = work / "cache"
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "PYTHONUNBUFFERED": "1"}
    started = time.monotonic()
    data = ["--data-dir", data_dir] if data_dir else []
    processes = [subprocess.Popen([sys.executable, "-m", "benchmarks.cli", "run", *RUN_FLAGS, *data], cwd=work,
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for _ in range(runs)]
    errors = [error.strip().splitlines()[-1] for process in processes
              if (error := process.communicate()[1]) and process.returncode != 0]
    folders = sorted((work / "runs").iterdir()) if (work / "runs").is_dir() else []
    kept = [folder for folder in folders if (folder / RESULTS_FILE).is_file()
            and all(run.status == "ok" for run in load_results(folder).runs)]
    decoded = cache / "mnist-bench" / "decoded"
    return {"seconds": time.monotonic() - started, "exit_codes": [process.returncode for process in processes],
            "folders": len(folders), "kept": len(kept), "cache_entries": len(list(decoded.iterdir())) if decoded.is_dir()
            else 0, "errors": errors}


def main(argv: list[str] | None = None) -> int:
    """Run the rounds and print one line per round and a verdict."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.measure.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8, help="runs started together per round (default: 8)")
    parser.add_argument("--rounds", type=int, default=10, help="rounds (default: 10)")
    parser.add_argument("--data-dir", default=os.environ.get("MNIST_BENCH_DATA"), help="MNIST folder")
    args = parser.parse_args(argv)
    clean = 0
    for round_ in range(1, args.rounds + 1):
        with tempfile.TemporaryDirectory(prefix="mnist-bench-soak-") as work:
            result = soak_round(args.runs, args.data_dir, Path(work))
        ok = (result["kept"] == result["folders"] == args.runs and result["cache_entries"] == 1
              and not result["errors"] and set(result["exit_codes"]) == {0})
        clean += ok
        print(f"round {round_}: {result['kept']}/{args.runs} runs kept in {result['folders']} folders, "
              f"{result['cache_entries']} cache entry, exit codes {sorted(set(result['exit_codes']))}, "
              f"{result['seconds']:.0f} s{'' if ok else ' FAIL: ' + '; '.join(result['errors'])}", flush=True)
    print(f"{clean}/{args.rounds} rounds clean ({args.runs} runs at once, one output root, one cold cache each)")
    return 0 if clean == args.rounds else 1


if __name__ == "__main__":
    sys.exit(main())
