"""What a run costs besides step time: start-up by phase and the worker's memory. Read inside the worker."""

from __future__ import annotations

import os
import resource
import time

SPAWNED_AT_ENV = "MNIST_BENCH_SPAWNED_AT"  # time.monotonic() in the parent just before it started the worker
STARTUP_PHASES = ("interpreter_s", "framework_import_s", "data_load_s", "model_build_s", "first_step_s")


def spawned_at() -> float | None:
    """When the parent started this process, on the system-wide monotonic clock; None if not told."""
    try:
        return float(os.environ[SPAWNED_AT_ENV])
    except (KeyError, ValueError):
        return None


def rss_mib() -> float | None:
    """This process' resident set size now, from /proc (Linux); None elsewhere."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            resident_pages = int(handle.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def peak_rss_mib() -> float:
    """The largest resident set size this process has had (getrusage's ru_maxrss, KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class StartupClock:
    """Phases of a worker's start-up, each from the end of the previous one, on the monotonic clock."""

    def __init__(self, entered_at: float):
        started = spawned_at()
        self.phases: dict[str, float | None] = {"interpreter_s": entered_at - started if started else None}
        self._last = entered_at

    def lap(self, phase: str) -> None:
        """Close `phase` now."""
        now = time.monotonic()
        self.phases[phase] = now - self._last
        self._last = now

    def summary(self) -> dict:
        """The phases and their sum, time to first step (over the phases that were measured)."""
        measured = [seconds for seconds in self.phases.values() if seconds is not None]
        return {"startup": {phase: self.phases.get(phase) for phase in STARTUP_PHASES},
                "time_to_first_step_s": sum(measured) if measured else None}
