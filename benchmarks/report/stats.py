"""Ratios with their uncertainty, and a verdict: the statistics every speed comparison is to be printed with.

Groundwork for "every ratio with its CI" (issue 22): framework-free, NumPy only, unit-tested on synthetic
samples. The design follows Kalibera & Jones ("Rigorous benchmarking in reasonable time", 2013): the unit
of analysis is a per-block median inside one process; processes (rounds) are resampled above it, so the
drift a shared machine shows over minutes widens the interval instead of hiding in it. Steady state is
found from the data (a changepoint on the block times), not assumed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

CONFIDENCE = 0.95
BOOTSTRAP_SAMPLES = 2000
FASTER, SLOWER, SAME = "faster", "slower", "~"


@dataclasses.dataclass(frozen=True)
class Ratio:
    """A over B (here: B's time over A's, so > 1 means A is faster), its CI, and what it allows one to say."""

    estimate: float
    low: float | None  # None: one round, no interval
    high: float | None
    verdict: str  # FASTER, SLOWER, SAME, or "no CI (1 round)"

    def __str__(self) -> str:
        if self.low is None:
            return f"{self.estimate:.2f}x (no CI: 1 round)"
        return f"{self.estimate:.2f}x [{self.low:.2f}, {self.high:.2f}] {self.verdict}"


def steady_state_start(block_seconds: Sequence[float], tolerance: float = 0.1) -> int | None:
    """Index of the first steady block, found from the data; None when no steady state was reached.

    The level is the median of the last half of the blocks; warm-up blocks (compiling, caches filling) are
    slower, so steady state starts at the first block within `tolerance` of that level. It counts as
    reached only if the blocks from there on are flat: their median absolute deviation within `tolerance`
    of their median (a series still drifting, or too noisy to call, has none).
    """
    times = np.asarray(block_seconds, dtype=np.float64)
    if len(times) < 3:
        return None
    level = np.median(times[len(times) // 2:])
    start = int(np.argmax(times <= level * (1 + tolerance)))
    steady = times[start:]
    flat = np.median(np.abs(steady - np.median(steady))) <= tolerance * np.median(steady)
    return start if flat and len(steady) >= len(times) // 2 else None


def process_estimate(block_seconds: Sequence[float]) -> float | None:
    """One process' figure: the median of its steady blocks (None without a steady state)."""
    start = steady_state_start(block_seconds)
    return None if start is None else float(np.median(np.asarray(block_seconds)[start:]))


def speed_ratio(baseline_rounds: Sequence[float], candidate_rounds: Sequence[float], threshold: float = 0.0,
                seed: int = 0) -> Ratio:
    """baseline/candidate time ratio over paired rounds (one per-process figure each), with a 95% bootstrap CI.

    Rounds are resampled in pairs, so drift that hit both in one round cancels. The verdict is FASTER or
    SLOWER only when the whole interval lies beyond 1 +- `threshold` (the noise measured on the machine,
    e.g. from an A/A comparison), SAME otherwise.
    """
    baseline, candidate = np.asarray(baseline_rounds, float), np.asarray(candidate_rounds, float)
    if baseline.shape != candidate.shape or baseline.ndim != 1 or not len(baseline):
        raise ValueError(f"paired rounds expected; got {baseline.shape} and {candidate.shape}")
    estimate = float(np.median(baseline) / np.median(candidate))
    if len(baseline) == 1:
        return Ratio(estimate, None, None, "no CI (1 round)")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(baseline), size=(BOOTSTRAP_SAMPLES, len(baseline)))
    ratios = np.median(baseline[picks], axis=1) / np.median(candidate[picks], axis=1)
    tail = (1 - CONFIDENCE) / 2
    low, high = (float(value) for value in np.quantile(ratios, [tail, 1 - tail]))
    return Ratio(estimate, low, high, verdict(low, high, threshold))


def verdict(low: float, high: float, threshold: float = 0.0) -> str:
    """FASTER when the CI lies wholly above 1 + threshold, SLOWER wholly below 1 - threshold, else SAME."""
    if low > 1 + threshold:
        return FASTER
    if high < 1 - threshold:
        return SLOWER
    return SAME
