"""This machine's saved calibration (`mnist-bench calibrate`): kept per user, valid for one host, CPU and core count,
and the noise threshold `run` judges its ratios with."""

from __future__ import annotations

import json
import os
import platform
import socket
from pathlib import Path

from benchmarks.measure.environment import cpu_name, usable_cores
from benchmarks.measure.stats import NOISE_THRESHOLD
from common.atomic import write_text_atomic

CALIBRATION_FILE = "calibration.json"
CALIBRATION_DIR_ENV = "MNIST_BENCH_CALIBRATION_DIR"  # where the machine's calibration lives (tests point it away)


def machine_key() -> dict:
    """What a calibration is valid for: this host, its CPU and how many cores the process may use."""
    return {"hostname": socket.gethostname(), "cpu": cpu_name(), "cores": usable_cores(),
            "machine": platform.machine()}


def calibration_dir() -> Path:
    """Where this user's machine calibration is kept: $MNIST_BENCH_CALIBRATION_DIR, else the XDG cache."""
    explicit = os.environ.get(CALIBRATION_DIR_ENV)
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mnist-bench"


def save_calibration(summary: dict) -> Path:
    """Keep `summary` as this machine's calibration (atomically; other machines' files untouched)."""
    path = calibration_dir() / CALIBRATION_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps({**summary, "machine_key": machine_key()}, indent=1) + "\n")
    return path


def load_calibration() -> dict | None:
    """This machine's saved calibration; None where there is none, it is unreadable, or it was made on another
    machine (another host, CPU or core count)."""
    path = calibration_dir() / CALIBRATION_FILE
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict) or saved.get("machine_key") != machine_key():
        return None
    return {**saved, "path": str(path)}


def usable_threshold(threshold) -> bool:
    """Whether a calibrated threshold can judge ratios: an A/A interval reaching 1 or more from 1 (too few or too
    noisy rounds) would call every ratio `~`."""
    return isinstance(threshold, (int, float)) and 0 <= threshold < 1


def noise_threshold() -> tuple[float, str]:
    """(the threshold within which `run` calls a ratio `~`, where it comes from): this machine's calibration where
    there is one, else the constant set on the 2-core machines (stats.NOISE_THRESHOLD)."""
    saved = load_calibration()
    if saved and usable_threshold(saved.get("threshold")):
        return float(saved["threshold"]), f"calibrated on this machine {saved.get('created', '')} ({saved['path']})"
    return NOISE_THRESHOLD, "default (no calibration of this machine: `mnist-bench calibrate`)"




FLOORS_FILE = "floors.json"


def floors_key(job_floor_key: tuple) -> str:
    """What a measured floor is valid for: this machine, the job's floor key (measure.roofline.floor_key) and the
    kernels' software (NumPy and its BLAS, JAX): another version or machine measures again."""
    from benchmarks.measure.environment import package_versions

    versions = package_versions()
    return json.dumps({**machine_key(), "job": list(job_floor_key),
                       "software": {name: versions.get(name) for name in ("numpy", "jax", "jaxlib")}}, sort_keys=True)


def cached_limits(key: str) -> dict | None:
    """The limits kept for `key`; None where none are (or the file is unreadable)."""
    try:
        kept = json.loads((calibration_dir() / FLOORS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    limits = kept.get(key) if isinstance(kept, dict) else None
    return limits if isinstance(limits, dict) else None


def keep_limits(key: str, limits: dict) -> None:
    """Keep `limits` for `key` beside the other keys' (atomically; an unreadable file starts afresh)."""
    path = calibration_dir() / FLOORS_FILE
    try:
        kept = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        kept = {}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps({**(kept if isinstance(kept, dict) else {}), key: limits}) + "\n")
