"""Change points, series over saved runs, the history command's regression gate, the terminal table's width and the
forest plot: all on synthetic runs (benchmarks/studies/report_scale.py writes them as `run` saves results)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmarks.cli import main
from benchmarks.measure.changepoints import change_points
from benchmarks.report.history import NothingToReport, build_series, find_reports, gate
from benchmarks.studies.report_scale import synthetic_history, synthetic_run

DATA = Path(__file__).parent / "data"


def noisy(rng, level: float, count: int, noise: float = 0.05) -> np.ndarray:
    """`count` times around `level` with log-normal noise."""
    return level * np.exp(rng.normal(0, noise, count))


@pytest.mark.parametrize("seed", range(5))
def test_a_known_step_is_found_where_it_is(seed):
    rng = np.random.default_rng(seed)
    series = np.concatenate([noisy(rng, 1.0, 25), noisy(rng, 1.2, 20)])
    found = change_points(series)
    assert [abs(point.index - 25) <= 1 for point in found] == [True]
    assert found[0].ratio == pytest.approx(1.2, rel=0.05)


def test_two_steps_in_a_long_series_are_found_through_the_windows():
    rng = np.random.default_rng(7)
    series = np.concatenate([noisy(rng, 1.0, 150), noisy(rng, 1.3, 100), noisy(rng, 0.9, 60)])
    found = change_points(series)
    assert [point.index for point in found] == [150, 250]
    assert found[0].ratio > 1 > found[1].ratio


def test_pure_noise_has_no_change_point():
    rng = np.random.default_rng(11)
    # Noise twice the 5% a step must exceed, at many lengths: not one call.
    calls = [change_points(noisy(rng, 2.0, int(rng.integers(6, 150)), noise=0.1)) for _ in range(100)]
    assert sum(map(len, calls)) == 0


def test_a_significant_step_smaller_than_the_noise_threshold_is_not_called():
    rng = np.random.default_rng(3)
    series = np.concatenate([noisy(rng, 1.0, 40, 0.005), noisy(rng, 1.03, 40, 0.005)])
    assert change_points(series, min_change=0.0)  # significant: found when any size counts
    assert change_points(series, min_change=0.05) == []


def test_too_short_or_invalid_series_have_none():
    assert change_points([1.0, 2.0, 1.0, 2.0]) == []
    assert change_points([1.0, 1.0, 1.0, 2.0, 2.0, float("nan")]) == []


@pytest.fixture()
def history(tmp_path) -> Path:
    """12 runs a day apart; flax 30% slower from the 7th on; the last run alone 40% slower for keras-jax."""
    root = tmp_path / "history"
    synthetic_history(root, 11, steps=[(6, "flax", 1.3)])
    levels = {"keras": 1.9, "flax": 0.56 * 1.3, "keras-jax": 0.58 * 1.4}
    import datetime

    from common.results import save_results

    save_results(synthetic_run(datetime.datetime(2026, 1, 12, tzinfo=datetime.timezone.utc), levels, seed=99),
                 root / "run-0011")
    return root


def test_series_points_and_steps_from_saved_runs(history):
    series = {s.backend: s for s in build_series(find_reports([history]).runs)}
    assert set(series) == {"keras", "flax", "keras-jax"}
    assert [len(s.points) for s in series.values()] == [12, 12, 12]
    assert [change.index for change in series["flax"].changes] == [6]
    assert series["flax"].changes[0].ratio == pytest.approx(1.3, rel=0.08)
    assert series["keras"].changes == []
    latest = series["keras"].points[-1]
    assert latest.low < latest.epoch_s < latest.high and latest.processes == 5


def test_gate_fails_on_the_latest_regression_only(history):
    series = build_series(find_reports([history]).runs)
    failing = gate(series, 10, set())
    # flax's step is old news (its latest run sits on its new level); keras-jax's last run is the regression.
    assert [regression.series.backend for regression in failing] == ["keras-jax"]
    assert failing[0].ratio == pytest.approx(1.4, rel=0.08)
    assert gate(series, 60, set()) == []
    assert gate(series, 10, {(failing[0].series.key, "run-0011")}) == []


def test_history_command_gates_and_acknowledges(history, capsys):
    assert main(["history", str(history)]) == 0
    printed = capsys.readouterr().out
    assert "mlp/flax/cpu/x1/b32/highest/full/bench-host: 12 runs" in printed and "step at run-0006" in printed
    assert main(["history", str(history), "--fail-on-regression", "10"]) == 1
    assert "REGRESSION mlp/keras-jax/" in capsys.readouterr().out
    key = "mlp/keras-jax/cpu/x1/b32/highest/full/bench-host"
    assert main(["history", str(history), "--fail-on-regression", "10", "--acknowledge", f"{key}@run-0011"]) == 0
    assert json.loads((history / "acknowledged-regressions.json").read_text())[0]["run"] == "run-0011"
    assert main(["history", str(history), "--fail-on-regression", "10"]) == 0  # kept in the file


def test_a_damaged_file_among_many_is_skipped_with_a_warning(history, capsys):
    (history / "run-0003" / "results.json").write_text("{ not json")
    (history / "old").mkdir()
    shutil.copy(DATA / "results-schema1.json", history / "old" / "results.json")
    found = find_reports([history])
    assert len(found.runs) == 12  # 11 synthetic + the schema-1 file
    assert len(found.skipped) == 1 and "run-0003" in found.skipped[0]
    assert main(["history", str(history)]) == 0
    assert "warning: skipped " in capsys.readouterr().err


def test_nothing_to_report_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(NothingToReport):
        find_reports([tmp_path / "empty"])
    assert main(["history", str(tmp_path / "empty")]) == 2
    assert main(["report", str(tmp_path / "empty"), "--out", str(tmp_path / "site")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all("nothing to report" in line for line in errors)
    assert not (tmp_path / "site").exists()


def test_terminal_table_fits_100_columns_and_plots_have_a_forest(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    synthetic_history(tmp_path / "h", 1)
    assert main(["show", str(tmp_path / "h" / "run-0000")]) == 0
    printed = capsys.readouterr().out
    assert max(map(len, printed.splitlines())) <= 100
    table = printed.split("epoch s: steady state")[0]
    assert table.count("[") == table.count("]") > 0  # no interval cut off at the edge
    assert "speed vs keras" in printed and "faster" in printed
    assert main(["compare", str(tmp_path / "h" / "run-0000"), "--out", str(tmp_path / "cmp")]) == 0
    assert (tmp_path / "cmp" / "plots" / "speed_ratios.png").stat().st_size > 10_000
    assert "speed_ratios.png" in (tmp_path / "cmp" / "summary.md").read_text()


def test_gate_needs_the_latest_points_whole_interval_past_the_limit(tmp_path):
    """A latest run 40% slower by its estimate but timed in one process has no interval: never a gate failure."""
    import datetime

    from common.results import save_results

    synthetic_history(tmp_path, 11)
    levels = {"keras": 1.9, "flax": 0.56, "keras-jax": 0.58 * 1.4}
    save_results(synthetic_run(datetime.datetime(2026, 1, 12, tzinfo=datetime.timezone.utc), levels, seed=99,
                               timing_rounds=0), tmp_path / "run-0011")
    series = {s.backend: s for s in build_series(find_reports([tmp_path]).runs)}
    assert series["keras-jax"].points[-1].low is None and series["keras-jax"].points[-1].epoch_s > 0.58 * 1.2
    assert gate(list(series.values()), 10, set()) == []
