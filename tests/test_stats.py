"""The ratio statistics on synthetic samples: no clock is read here."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.measure.stats import (FASTER, NO_CI, SAME, SLOWER, exceeds, median_interval, speed_ratio,
                                     steady_state_start, verdict)


def test_steady_state_is_found_after_the_warm_up():
    blocks = [5.0, 2.4, 1.02, 0.99, 1.01, 1.0, 0.98, 1.03, 1.0, 0.97]
    assert steady_state_start(blocks) == 2
    assert steady_state_start([1.0, 1.01, 0.99, 1.0]) == 0  # no warm-up at all


def test_no_steady_state_is_said_when_the_series_keeps_moving():
    assert steady_state_start(np.linspace(3.0, 1.0, 12)) is None  # still speeding up
    noisy = np.random.default_rng(0).choice([0.5, 1.0, 2.0], size=20)
    assert steady_state_start(noisy) is None
    assert steady_state_start([1.0, 1.0]) is None


def test_a_clear_speed_up_is_called_faster_with_a_ci_around_it():
    rng = np.random.default_rng(1)
    drift = rng.uniform(0.7, 1.4, size=10)  # the machine's speed, shared by both within a round
    baseline, candidate = 2.0 * drift * rng.normal(1, 0.02, 10), 1.0 * drift * rng.normal(1, 0.02, 10)
    ratio = speed_ratio(baseline, candidate)
    assert ratio.verdict == FASTER and ratio.low < 2.0 < ratio.high and ratio.low > 1.5
    assert str(ratio).startswith("2.") and "faster" in str(ratio)


def test_an_a_a_comparison_is_not_distinguishable():
    rng = np.random.default_rng(2)
    same = rng.normal(1.0, 0.05, size=(2, 12))
    ratio = speed_ratio(same[0], same[1], threshold=0.05)
    assert ratio.verdict == SAME and ratio.low <= 1.0 <= ratio.high


def test_one_round_has_no_ci_and_says_so():
    ratio = speed_ratio([2.0], [1.0])
    assert (ratio.estimate, ratio.low, ratio.high) == (2.0, None, None) and "no CI" in str(ratio)


def test_verdict_is_same_when_the_ci_holds_1_or_stays_inside_the_noise():
    assert verdict(1.10, 1.30) == FASTER and verdict(0.70, 0.90) == SLOWER
    assert verdict(0.95, 1.20) == SAME  # holds 1
    assert verdict(1.01, 1.04, threshold=0.05) == SAME  # excludes 1, but within the noise measured on this machine
    assert verdict(1.03, 1.10, threshold=0.05) == FASTER
    with pytest.raises(ValueError, match="paired rounds"):
        speed_ratio([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="positive, finite"):
        speed_ratio([1.0, float("nan")], [1.0, 1.0])


def test_the_estimate_is_the_geometric_mean_of_the_paired_ratios():
    ratio = speed_ratio([2.0, 8.0], [1.0, 2.0])  # per-round ratios 2 and 4
    assert ratio.estimate == pytest.approx(np.sqrt(8))
    assert ratio.low == pytest.approx(2.0) and ratio.high == pytest.approx(4.0)


def test_blocks_inside_a_round_widen_the_interval_that_their_medians_alone_would_give():
    rng = np.random.default_rng(3)
    baseline = [rng.normal(2.0, 0.3, 8) for _ in range(4)]
    candidate = [rng.normal(1.0, 0.15, 8) for _ in range(4)]
    figures = speed_ratio([np.median(b) for b in baseline], [np.median(c) for c in candidate])
    blocks = speed_ratio(baseline, candidate)
    assert blocks.estimate == pytest.approx(figures.estimate)
    assert blocks.high - blocks.low > figures.high - figures.low


def test_unpaired_rounds_of_different_lengths_are_compared_side_by_side():
    ratio = speed_ratio([2.0, 2.1, 1.9], [1.0, 1.05], paired=False)
    assert ratio.estimate == pytest.approx(np.exp(np.log([2.0, 2.1, 1.9]).mean() - np.log([1.0, 1.05]).mean()))
    assert ratio.verdict == FASTER and ratio.low < ratio.estimate < ratio.high


def test_a_a_comparisons_under_drift_are_rarely_called_different():
    """On synthetic A/A trials (shared drift per round, 5% process noise, 5 rounds), the 95% interval with the
    noise threshold calls `~` in at least 90% of trials, and a 15% slowdown `slower` in at least 90%."""
    rng = np.random.default_rng(4)
    aa, ab = [], []
    for _ in range(200):
        drift = rng.uniform(0.7, 1.4, size=5)
        a = [drift[r] * rng.normal(1, 0.05) * rng.normal(1, 0.02, 6) for r in range(5)]
        b = [drift[r] * rng.normal(1, 0.05) * rng.normal(1, 0.02, 6) for r in range(5)]
        aa.append(speed_ratio(a, b, threshold=0.05).verdict)
        ab.append(speed_ratio(a, [blocks * 1.15 for blocks in b], threshold=0.05).verdict)
    assert aa.count(SAME) >= 180 and ab.count(SLOWER) >= 180


def test_the_regression_gate_needs_the_whole_interval_past_the_threshold():
    old = [1.0, 1.0, 1.0]
    # speed_ratio(new, old) is the time ratio new/old
    assert exceeds(speed_ratio([0.7, 0.72, 0.69], old), 0.1) is False  # a speed-up is no regression
    assert exceeds(speed_ratio([1.05, 1.3, 1.2], old), 0.1) is False  # a regression the CI cannot rule out is not one
    assert exceeds(speed_ratio([1.3, 1.32, 1.29], old), 0.1) is True
    assert exceeds(speed_ratio([1.3], [1.0]), 0.1) is False  # one point decides nothing
    assert speed_ratio([1.3], [1.0]).verdict == NO_CI


def test_a_median_of_process_figures_comes_with_its_interval():
    assert median_interval([2.0]) == (2.0, None, None)
    median, low, high = median_interval([1.0, 2.0, 3.0, 2.5, 1.5])
    assert median == 2.0 and 1.0 <= low <= median <= high <= 3.0
    with pytest.raises(ValueError):
        median_interval([None])
