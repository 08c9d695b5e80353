"""`mnist-bench suite`: the pytest-benchmark suite, one process per backend, merged into one JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from common.atomic import write_text_atomic
from common.job import Job

BENCH_DIR = Path(__file__).resolve().parent
MERGED_FILE = "benchmarks.json"


class Regression(RuntimeError):
    """Benchmarks got slower than the baseline allows: the 95% CI of new/old time wholly above 1 + the threshold."""


def pytest_command(target: str, json_path: Path, quick: bool, backend: str | None, precision: str,
                   baseline: Path | None = None) -> list[str]:
    """The pytest invocation for one part of the suite; with a baseline, pytest-benchmark's side-by-side table."""
    command = [sys.executable, "-m", "pytest", str(BENCH_DIR / target), "-p", "no:cacheprovider", "-p", "no:xdist",
               "-q", "--benchmark-json", str(json_path), "--benchmark-columns=min,median,mean,stddev,rounds",
               "--bench-precision", precision]
    if backend:
        command += ["--bench-backend", backend]
    if quick:
        command.append("--bench-quick")
    if baseline is not None:
        command.append(f"--benchmark-compare={baseline}")
    return command


def run_suite(backends: Sequence[str], out_dir: Path, quick: bool = False, quiet: bool = False,
              precision: str = Job.precision, baseline: Path | None = None, fail_over_pct: float | None = None) -> Path:
    """Run each backend's benchmarks in a fresh process, then the framework-free ones; merge the JSON.

    Raises Regression when, against `baseline`, a benchmark got slower by more than `fail_over_pct` by the rule of
    every ratio here (`regressions_against`), RuntimeError when a part failed; the merged JSON is written either way.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    parts_dir = out_dir / "parts"
    parts_dir.mkdir(exist_ok=True)
    jobs = [(f"backend-{name}", "test_bench_backends.py", name) for name in backends]
    jobs.append(("common", "test_bench_common.py", None))
    parts, failures = [], []
    for label, target, backend in jobs:
        part = parts_dir / f"{label}.json"
        if not quiet:
            print(f"== {label}", file=sys.stderr, flush=True)
        returncode, _ = _run_streaming(pytest_command(target, part, quick, backend, precision, baseline), quiet)
        if returncode not in (0, 5) or not part.exists():
            failures.append(f"{label} (pytest exit {returncode})")
        if part.exists():
            parts.append(json.loads(part.read_text(encoding="utf-8")))
    merged_path = out_dir / MERGED_FILE
    write_text_atomic(merged_path, json.dumps(merge_benchmark_json(parts), indent=2))
    if failures:
        raise RuntimeError(f"benchmarks failed for {', '.join(failures)}; partial results in {merged_path}")
    if baseline is not None and fail_over_pct is not None:
        regressions = regressions_against(json.loads(merged_path.read_text(encoding="utf-8")),
                                          json.loads(baseline.read_text(encoding="utf-8")), fail_over_pct / 100)
        if regressions:
            raise Regression(f"{len(regressions)} benchmark(s) slower than {baseline} by more than {fail_over_pct:g}% "
                             f"(new/old time, 95% CI over rounds wholly above {1 + fail_over_pct / 100:g}): "
                             f"{'; '.join(regressions)}")
    return merged_path


def round_timings(bench: dict) -> list[float]:
    """A pytest-benchmark entry's per-round seconds (`stats.data`, which --benchmark-json always saves)."""
    data = bench.get("stats", {}).get("data")
    if not data:
        raise ValueError(f"benchmark {bench.get('fullname', bench.get('name'))!r} has no per-round timings "
                         "(stats.data); record the baseline again with `mnist-bench suite`, which saves them")
    return [float(value) for value in data]


def regressions_against(merged: dict, baseline: dict, threshold: float) -> list[str]:
    """'name: new/old time 1.35x [1.22, 1.49]' for each benchmark of both whose new/old time ratio has its 95% CI
    (bootstrap over the rounds, unpaired: two sessions) wholly above 1 + `threshold`; never decided from one point."""
    from benchmarks.measure.stats import exceeds, speed_ratio

    old = {bench["fullname"]: bench for bench in baseline.get("benchmarks", [])}
    regressed = []
    for bench in merged["benchmarks"]:
        if bench["fullname"] not in old:
            continue
        # speed_ratio(a, b) is a's time over b's: new over old here.
        ratio = speed_ratio(round_timings(bench), round_timings(old[bench["fullname"]]), threshold, paired=False)
        if exceeds(ratio, threshold):
            regressed.append(f"{bench['name']}: new/old time {ratio.estimate:.2f}x [{ratio.low:.2f}, {ratio.high:.2f}]")
    return regressed


def _run_streaming(command: list[str], quiet: bool) -> tuple[int, str]:
    """Run `command`, echoing its output to stderr unless quiet; return its exit code and output."""
    # pytest-benchmark turns itself off inside a pytest-xdist worker (it reads PYTEST_XDIST_WORKER); a suite
    # started from one, as the test suite does, is still a serial run of its own and must measure.
    environment = {name: value for name, value in os.environ.items() if not name.startswith("PYTEST_XDIST_")}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment)
    lines = []
    for line in process.stdout:
        lines.append(line)
        if not quiet:
            sys.stderr.write(line)
    return process.wait(), "".join(lines)


def merge_benchmark_json(parts: Sequence[dict]) -> dict:
    """One pytest-benchmark document: the first part's machine and commit info, every part's benchmarks."""
    if not parts:
        raise ValueError("no benchmark results to merge")
    merged = {key: value for key, value in parts[0].items() if key != "benchmarks"}
    merged["benchmarks"] = [bench for part in parts for bench in part.get("benchmarks", [])]
    return merged


def suite_table(merged: dict) -> str:
    """Train-step time and GFLOP/s by batch size and backend, as text."""
    rows = {}
    for bench in merged["benchmarks"]:
        info = bench.get("extra_info", {})
        if bench["name"].startswith("test_train_step"):
            rows.setdefault(info["batch_size"], {})[info["backend"]] = info
    backends = sorted({name for row in rows.values() for name in row})
    lines = ["batch  " + "  ".join(f"{name + ' ms/step':>18}  {'GFLOP/s':>8}" for name in backends)]
    for batch_size in sorted(rows):
        cells = []
        for name in backends:
            info = rows[batch_size].get(name)
            cells.append(f"{info['step_ms']:>18.3f}  {info['gflops_per_s']:>8.2f}" if info else f"{'—':>18}  {'—':>8}")
        lines.append(f"{batch_size:>5}  " + "  ".join(cells))
    return "\n".join(lines)
