"""Change points in a benchmark's history: E-divisive means with a permutation test, windowed as Apache Otava does it.

E-divisive (Matteson & James, "A nonparametric approach for multiple change point analysis of multivariate data",
2014) splits a series where the energy distance between the two sides is largest and keeps the split only if a
permutation test finds it significant; each side is then searched again. MongoDB's performance CI and Apache Otava
(formerly Hunter) run it over benchmark histories; like Otava we search long series in overlapping windows, so the
cost stays linear in the history's length and an old step does not mask a new one. A split must also move the level
by more than the noise threshold the runs were judged with and more than one point's own noise: a significant 1% step
on a 2-core machine that drifts 1.3-2x is not a regression anyone can act on.

Framework-free (NumPy), deterministic (seeded permutations), unit-tested on synthetic series with known steps and on
pure noise (tests/test_history.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

# A history gate that cries wolf gets ignored: at 0.01 one noise series in a hundred had a step called. Otava's
# 0.001 is out of reach of a permutation test on short histories (12 points split 6/6 cannot go below 1/924).
SIGNIFICANCE = 0.005  # the permutation test's alpha
CONFIRMATION = 0.001  # the t-test's, on each kept split's two sides (Otava's default)
PERMUTATIONS = 1999  # p-values down to 0.0005
MIN_SEGMENT = 3  # points on each side of a split: two points are no level
WINDOW = 64  # points per searched window (Otava's default is 30-60); windows overlap by half


@dataclasses.dataclass(frozen=True)
class ChangePoint:
    """A step in a series: the first index of the new level, the levels on each side (medians) and their ratio."""

    index: int
    before: float
    after: float
    p_value: float

    @property
    def ratio(self) -> float:
        """after / before: above 1 the series rose there (for times: got slower)."""
        return self.after / self.before


def energy_statistic(values: np.ndarray, min_segment: int = MIN_SEGMENT) -> tuple[int, float]:
    """The split of `values` with the largest E-divisive statistic Q (Matteson & James, eq. 5 with alpha 1):
    (index where the right side starts, Q); (-1, 0) when the series is too short to split."""
    m = len(values)
    if m < 2 * min_segment:
        return -1, 0.0
    distances = np.abs(values[:, None] - values[None, :])
    # prefix[i, j] = sum of distances[:i, :j], so each block of the matrix is four lookups.
    prefix = np.zeros((m + 1, m + 1))
    prefix[1:, 1:] = distances.cumsum(0).cumsum(1)
    tau = np.arange(min_segment, m - min_segment + 1)
    left = prefix[tau, tau]
    cross = prefix[tau, m] - left
    right = prefix[m, m] - 2 * prefix[tau, m] + left
    n_left, n_right = tau, m - tau
    energy = 2 * cross / (n_left * n_right) - left / (n_left * (n_left - 1)) - right / (n_right * (n_right - 1))
    q = n_left * n_right / m * energy
    best = int(np.argmax(q))
    return int(tau[best]), float(q[best])


def _significant_split(values: np.ndarray, rng: np.random.Generator, min_segment: int,
                       alpha: float, permutations: int) -> tuple[int, float] | None:
    """The best split and its permutation p-value, or None when it is not significant at `alpha`."""
    split, observed = energy_statistic(values, min_segment)
    if split < 0:
        return None
    exceed, allowed = 0, int(alpha * (permutations + 1)) - 1  # more exceedances than this: p > alpha
    for _ in range(permutations):
        if energy_statistic(rng.permutation(values), min_segment)[1] >= observed:
            exceed += 1
            if exceed > allowed:
                return None  # settled early: most searches on noise stop after a few permutations
    return split, (exceed + 1) / (permutations + 1)


def _search(values: np.ndarray, offset: int, seed: int, min_segment: int, alpha: float, permutations: int,
            found: dict[int, float]) -> None:
    """Binary segmentation: split where significant, then search each side."""
    rng = np.random.default_rng([seed, offset, len(values)])
    result = _significant_split(values, rng, min_segment, alpha, permutations)
    if result is None:
        return
    split, p_value = result
    found[offset + split] = min(p_value, found.get(offset + split, 1.0))
    _search(values[:split], offset, seed, min_segment, alpha, permutations, found)
    _search(values[split:], offset + split, seed, min_segment, alpha, permutations, found)


def change_points(series: Sequence[float], min_change: float = 0.05, *, log: bool = True,
                  min_segment: int = MIN_SEGMENT, alpha: float = SIGNIFICANCE, permutations: int = PERMUTATIONS,
                  window: int = WINDOW, seed: int = 0) -> list[ChangePoint]:
    """The steps of `series`, oldest first: significant E-divisive splits that move the median level by more than
    `min_change` (relative). `log`: search log values, so a 10% step weighs the same at any level (times, rates)."""
    raw = np.asarray(series, dtype=np.float64)
    if len(raw) < 2 * min_segment or not np.all(np.isfinite(raw)) or (log and np.any(raw <= 0)):
        return []
    values = np.log(raw) if log else raw
    # A step must also outgrow one point's own noise (robust, from successive differences, which a step barely
    # moves): on a history noisier than the runs' threshold, the threshold alone would let noise through.
    point_noise = 1.4826 * float(np.median(np.abs(np.diff(values)))) / np.sqrt(2)
    min_change = max(min_change, float(np.expm1(point_noise)) if log else point_noise / abs(float(np.median(raw))))
    found: dict[int, float] = {}
    starts = [0] if len(values) <= window else range(0, len(values) - window // 2, window // 2)
    for start in starts:
        _search(values[start:start + window], start, seed, min_segment, alpha, permutations, found)
    # Windows overlap: one step seen from two windows lands on nearby indices; keep the more significant.
    merged: list[int] = []
    for index in sorted(found):
        if merged and index - merged[-1] < 2 * min_segment:
            if found[index] < found[merged[-1]]:
                merged[-1] = index
            continue
        merged.append(index)
    return _with_levels(raw, values, merged, found, min_change)


def _with_levels(raw: np.ndarray, values: np.ndarray, indices: list[int], p_values: dict[int, float],
                 min_change: float) -> list[ChangePoint]:
    """Each split's levels (medians between its neighbours), keeping only splits that move the level by more than
    `min_change` and whose two sides a Welch t-test tells apart at CONFIRMATION (Otava's test; the permutation
    test alone still let one noise series in a hundred through). A dropped split's sides merge, so the levels and
    tests are redone until every split left passes."""
    from scipy import stats

    while True:
        bounds = [0, *indices, len(raw)]
        weakest, weakest_score = None, np.inf
        points = []
        for k, index in enumerate(indices):
            left, right = slice(bounds[k], index), slice(index, bounds[k + 2])
            point = ChangePoint(index, float(np.median(raw[left])), float(np.median(raw[right])), p_values[index])
            step = abs(np.log(point.ratio))
            t_p = float(stats.ttest_ind(values[left], values[right], equal_var=False).pvalue)
            if step <= np.log1p(min_change) or not t_p < CONFIRMATION:
                score = step - np.log1p(min_change) - t_p  # the weakest goes first
                if score < weakest_score:
                    weakest, weakest_score = index, score
            points.append(point)
        if weakest is None:
            return points
        indices = [index for index in indices if index != weakest]
