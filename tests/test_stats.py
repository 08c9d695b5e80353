"""The ratio statistics on synthetic samples: no clock is read here."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.report.stats import FASTER, SAME, SLOWER, process_estimate, speed_ratio, steady_state_start, verdict


def test_steady_state_is_found_after_the_warm_up():
    blocks = [5.0, 2.4, 1.02, 0.99, 1.01, 1.0, 0.98, 1.03, 1.0, 0.97]
    assert steady_state_start(blocks) == 2
    assert process_estimate(blocks) == pytest.approx(1.0, abs=0.02)
    assert steady_state_start([1.0, 1.01, 0.99, 1.0]) == 0  # no warm-up at all


def test_no_steady_state_is_said_when_the_series_keeps_moving():
    assert steady_state_start(np.linspace(3.0, 1.0, 12)) is None  # still speeding up
    noisy = np.random.default_rng(0).choice([0.5, 1.0, 2.0], size=20)
    assert steady_state_start(noisy) is None
    assert steady_state_start([1.0, 1.0]) is None and process_estimate([2.0, 1.0]) is None


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


def test_verdict_needs_the_whole_interval_past_the_noise_threshold():
    assert verdict(1.10, 1.30) == FASTER and verdict(0.70, 0.90) == SLOWER
    assert verdict(0.95, 1.20) == SAME
    assert verdict(1.03, 1.10, threshold=0.05) == SAME  # within the noise measured on this machine
    with pytest.raises(ValueError, match="paired rounds"):
        speed_ratio([1.0, 2.0], [1.0])
