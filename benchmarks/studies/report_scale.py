"""Does `mnist-bench report` build a history of 1,000 runs in under 10 s, and does its page stay responsive?

Writes a synthetic history (runs of three backends, each with one full round and timing rounds, epoch times drawn
around known levels, with known steps), then times `report` over it in a fresh process and, where Debian's chromium
and its chromedriver are installed, how long the page takes to its ready signal on the runs list and the history
view, and to switch between them. The generator is also what the tests build their histories with
(tests/test_history.py, tests/test_report_site.py).

    python -m benchmarks.studies.report_scale OUT_DIR [--runs 1000]
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from common.config import ExperimentConfig
from common.job import Job
from common.results import Results, RunResult, save_results

LEVELS = {"keras": 1.9, "flax": 0.56, "keras-jax": 0.58}  # seconds per epoch, about this machine's (2026-12-08)


def synthetic_run(created: datetime.datetime, levels: dict[str, float], *, timing_rounds: int = 4,
                  hostname: str = "bench-host", noise: float = 0.05, seed: int = 0,
                  error: str | None = None) -> Results:
    """A run as `mnist-bench run` saves it: per backend one full 10-epoch training and `timing_rounds` timing
    processes (2 warm-up + 1 timed epoch), each process' epochs drawn around its backend's level."""
    rng = np.random.default_rng(seed)
    runs = []
    for round_index in range(1 + timing_rounds):
        timing = round_index > 0
        for backend, level in levels.items():
            process = level * np.exp(rng.normal(0, noise))  # each process its own level: the per-process noise
            epochs = 3 if timing else 10
            history = []
            for epoch in range(epochs):
                seconds = process * (2.5 if epoch == 0 else 1.0) * np.exp(rng.normal(0, noise / 3))
                accuracy = 0.93 + 0.05 * (1 - np.exp(-epoch))
                history.append({"epoch": epoch + 1, "loss": float(0.25 * np.exp(-epoch / 3)), "accuracy": accuracy,
                                "val_loss": float(0.11 + 0.005 * epoch), "val_accuracy": accuracy - 0.01,
                                "epoch_s": float(seconds)})
            runs.append(RunResult(
                backend=backend, seed=0, device="cpu", status="ok", round=round_index, timing_only=timing,
                history=history, test=None if timing else {"loss": 0.08, "accuracy": 0.978},
                timing={"steady_from_epoch": 1, "epoch_s_median": float(np.median([h["epoch_s"] for h in history[1:]])),
                        "samples_per_s": 48000 / process, "time_to_target_s": None if timing else 3 * process},
                costs={"startup": {"framework_import_s": 2.0, "data_load_s": 0.8}, "peak_rss_mib": 900.0,
                       "time_to_first_step_s": 4.0},
                confusion=[] if timing else np.diag(np.full(10, 980)).tolist(),
                # As --step-times clocks them: 1,500 steps an epoch, a few drawn here.
                step_ms=[] if timing else (process / 1.5 * np.exp(rng.normal(0, noise, 50))).tolist(),
                error=error))
    environment = {"hostname": hostname, "cpu": "Synthetic CPU", "usable_cores": 2, "memory_gib": 24, "os": "Linux",
                   "python": "3.11.7", "packages": {"jax": "0.10.2", "flax": "0.12.8", "keras": "3.15.1",
                                                    "tensorflow-cpu": "2.21.0"},
                   "noise_threshold": {"threshold": 0.05, "source": "default"}}
    return Results(created=created.isoformat(timespec="seconds"), environment=environment,
                   job=Job(backends=tuple(levels), timing_rounds=timing_rounds, config=ExperimentConfig()), runs=runs)


def synthetic_history(root: Path, count: int, steps: Sequence[tuple[int, str, float]] = (), **run_options) -> list[Path]:
    """`count` runs a day apart under root/run-NNNN; each (index, backend, factor) in `steps` multiplies that
    backend's level from run `index` on (a regression when factor > 1)."""
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    folders = []
    for index in range(count):
        levels = dict(LEVELS)
        for at, backend, factor in steps:
            if index >= at:
                levels[backend] *= factor
        folder = root / f"run-{index:04d}"
        save_results(synthetic_run(start + datetime.timedelta(days=index), levels, seed=index, **run_options), folder)
        folders.append(folder)
    return folders


def _page_timings(site: Path) -> dict:
    """Seconds to the page's ready signal from file:// on the runs list and the history, and to switch views."""
    from selenium import webdriver
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(flag)
    options.binary_location = "/usr/bin/chromium"
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService("/usr/bin/chromedriver"))
    try:
        timings = {}
        for view in ("runs", "history", "regressions", "runs"):
            start = time.perf_counter()
            driver.get(f"{site.resolve().as_uri()}/index.html#{view}") if not timings else \
                driver.execute_script(f"location.hash = '{view}'")
            WebDriverWait(driver, 120, poll_frequency=0.05).until(
                lambda d: d.execute_script("return document.documentElement.dataset.ready") == view)
            timings[f"{'open' if len(timings) == 0 else 'switch to'} {view}"] = time.perf_counter() - start
        return timings
    finally:
        driver.quit()


def main(argv: list[str] | None = None) -> int:
    """Generate the history, time `report` over it, and the page where a browser is installed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args(argv)
    history = args.out_dir / "history"
    synthetic_history(history, args.runs, steps=[(args.runs // 2, "flax", 1.25)])
    site = args.out_dir / "site"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "benchmarks.cli", "report", str(history), "--out", str(site)], check=True,
                   stdout=subprocess.DEVNULL)
    figures = {"runs": args.runs, "report_s": time.perf_counter() - start,
               "data_js_mib": (site / "data.js").stat().st_size / 2 ** 20}
    if Path("/usr/bin/chromedriver").is_file():
        figures["page_s"] = _page_timings(site)
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
