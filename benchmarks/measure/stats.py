"""Ratios with their uncertainty, and a verdict: the statistics every speed comparison is to be printed with.

Framework-free (NumPy and SciPy), unit-tested on synthetic samples. The design follows Kalibera & Jones
("Rigorous benchmarking in reasonable time", 2013): the unit of analysis is a per-block median inside one process;
processes (rounds) are resampled above it, so the drift a shared machine shows over minutes widens the interval
instead of hiding in it. Steady state is found from the data (a changepoint on the block times), not assumed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

CONFIDENCE = 0.95
BOOTSTRAP_SAMPLES = 2000
FASTER, SLOWER, SAME = "faster", "slower", "~"
NO_CI = "no CI (1 round)"
# The smallest difference the 2-core machines can be trusted to show, set from an A/A pair (the same backend twice)
# over many interleaved rounds (docs/results/2026-12-03-aa-ab.md, and `mnist-bench calibrate` since). A ratio whose
# whole CI lies inside 1 +- this is called `~`; a machine that was calibrated uses its own (measure/calibration.py).
NOISE_THRESHOLD = 0.05


@dataclasses.dataclass(frozen=True)
class Ratio:
    """A speed ratio (the baseline's time over the candidate's: > 1 means the candidate is faster), its 95% CI,
    and what it allows one to say."""

    estimate: float
    low: float | None  # None: one round, no interval
    high: float | None
    verdict: str  # FASTER, SLOWER, SAME, or NO_CI

    def __str__(self) -> str:
        if self.low is None:
            return f"{self.estimate:.2f}x (no CI: 1 round)"
        return f"{self.estimate:.2f}x [{self.low:.2f}, {self.high:.2f}] {self.verdict}"

    def to_dict(self) -> dict:
        """Plain-JSON form, for results files and benchmark reports."""
        return dataclasses.asdict(self)


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


def _as_blocks(rounds) -> list[np.ndarray]:
    """Each round as an array of its blocks: a bare number is a process already reduced to one figure."""
    blocks = [np.atleast_1d(np.asarray(entry, dtype=np.float64)) for entry in rounds]
    if any(block.ndim != 1 or not len(block) or not np.all(np.isfinite(block)) or np.any(block <= 0)
           for block in blocks):
        raise ValueError("every round needs one or more positive, finite times")
    return blocks


def _resampled_medians(blocks: list[np.ndarray], picks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Two-level bootstrap (Kalibera & Jones): the rounds `picks` chose, each one's blocks resampled in turn,
    reduced to the median of each resampled process: shape (samples, rounds). Rounds with as many blocks are
    resampled together (one draw and one median for all of them: a report of 1,000 runs takes thousands)."""
    medians = np.empty(picks.shape)
    by_length: dict[int, list[int]] = {}
    for index, block in enumerate(blocks):
        by_length.setdefault(len(block), []).append(index)
    for length, indices in by_length.items():
        chosen = np.isin(picks, indices)
        draws = int(chosen.sum())
        if not draws:
            continue
        # Every round's row, those of other lengths left NaN: the picks index it directly.
        stacked = np.full((len(blocks), length), np.nan)
        stacked[indices] = np.stack([blocks[i] for i in indices])
        if length == 1:
            medians[chosen] = stacked[picks[chosen], 0]
            continue
        inner = stacked[picks[chosen][:, None], rng.integers(0, length, size=(draws, length))]
        medians[chosen] = np.median(inner, axis=1)
    return medians


def shift_estimate(log_base: np.ndarray, log_cand: np.ndarray, paired: bool) -> np.ndarray:
    """The log speed ratio, per row of (resampled) log times: the mean per-round difference (paired) or the
    difference of the two means (unpaired), i.e. the log of a ratio of geometric means.

    Hodges-Lehmann and the median of the per-round ratios were judged against it on two real A/A/B runs of `run`'s
    protocol (docs/results/2026-12-08-timing-rounds.md): neither called a 15% slowdown more often at the same
    false-positive rate, and on normal noise both need more rounds, so the plain mean stays.
    """
    log_base, log_cand = np.atleast_2d(log_base), np.atleast_2d(log_cand)
    if paired:
        return np.mean(log_base - log_cand, axis=1)
    return np.mean(log_base, axis=1) - np.mean(log_cand, axis=1)


def speed_ratio(baseline_rounds: Sequence, candidate_rounds: Sequence, threshold: float = 0.0, paired: bool = True,
                seed: int = 0) -> Ratio:
    """How many times faster the candidate ran than the baseline (baseline time / candidate time), 95% CI, verdict.

    Each round is one process' figure, or its blocks (steady epochs, say), whose median is its figure; blocks are
    resampled inside each resampled round, so a round's own noise widens the interval too. `paired`: round i of
    both ran side by side (an interleaved round), so the ratio is taken per round and drift that hit both cancels;
    the estimate is the geometric mean of the per-round ratios. Unpaired (runs of different sessions or machines):
    the ratio of the two geometric means, each side resampled on its own. The verdict (`verdict`) is SAME when the interval includes 1 or lies wholly within 1 +- `threshold`
    (NOISE_THRESHOLD, or this machine's calibrated noise).
    """
    baseline, candidate = _as_blocks(baseline_rounds), _as_blocks(candidate_rounds)
    if not baseline or not candidate or (paired and len(baseline) != len(candidate)):
        raise ValueError(f"paired rounds expected; got {len(baseline)} and {len(candidate)}" if paired else
                         "rounds expected on both sides")
    log_base = np.log([np.median(block) for block in baseline])
    log_cand = np.log([np.median(block) for block in candidate])
    estimate = float(np.exp(shift_estimate(log_base, log_cand, paired)[0]))
    if len(baseline) == 1 and len(candidate) == 1:
        return Ratio(estimate, None, None, NO_CI)
    rng = np.random.default_rng(seed)
    base_picks = rng.integers(0, len(baseline), size=(BOOTSTRAP_SAMPLES, len(baseline)))
    cand_picks = base_picks if paired else rng.integers(0, len(candidate), size=(BOOTSTRAP_SAMPLES, len(candidate)))
    base = np.log(_resampled_medians(baseline, base_picks, rng))
    cand = np.log(_resampled_medians(candidate, cand_picks, rng))
    tail = expanded_tail(min(len(baseline), len(candidate)))
    low, high = (float(value) for value in np.exp(np.quantile(shift_estimate(base, cand, paired), [tail, 1 - tail])))
    return Ratio(estimate, low, high, verdict(low, high, threshold))


def expanded_tail(rounds: int) -> float:
    """The tail probability at which to cut the bootstrap distribution for a 95% interval from `rounds` rounds.

    A percentile bootstrap from a handful of rounds is too narrow (it cannot see beyond the rounds it has: on
    synthetic A/A trials with 5 rounds it called 14% of them different); Hesterberg's expanded percentile
    interval ("What teachers should know about the bootstrap", 2015) widens the nominal level to what the t
    interval would use, sqrt(n/(n-1)) * t(n-1), which brings the coverage back to about 95%.
    """
    from scipy import stats

    if rounds < 2:
        return 0.0
    t = stats.t.ppf(1 - (1 - CONFIDENCE) / 2, rounds - 1)
    return float(stats.norm.cdf(-np.sqrt(rounds / (rounds - 1)) * t))


def median_interval(values: Sequence[float], seed: int = 0) -> tuple[float, float | None, float | None]:
    """The median of per-process figures (a floor ratio, say) and its 95% bootstrap CI; no CI from one value."""
    values = np.asarray([value for value in values if value is not None], dtype=np.float64)
    if not len(values):
        raise ValueError("no values")
    if len(values) == 1:
        return float(values[0]), None, None
    rng = np.random.default_rng(seed)
    medians = np.median(values[rng.integers(0, len(values), size=(BOOTSTRAP_SAMPLES, len(values)))], axis=1)
    tail = (1 - CONFIDENCE) / 2
    low, high = np.quantile(medians, [tail, 1 - tail])
    return float(np.median(values)), float(low), float(high)


def verdict(low: float, high: float, threshold: float = 0.0) -> str:
    """SAME (`~`) when the CI includes 1 or lies wholly within 1 +- threshold; else FASTER (above 1) or SLOWER."""
    if low <= 1 <= high or (1 - threshold <= low and high <= 1 + threshold):
        return SAME
    return FASTER if low > 1 else SLOWER


def exceeds(ratio: Ratio, threshold: float) -> bool:
    """Whether a time ratio (new/old) is wholly above 1 + threshold: the regression gate's rule, never one point."""
    return ratio.low is not None and ratio.low > 1 + threshold
