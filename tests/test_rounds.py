"""Interleaved rounds: A/A labels, the balanced round order, steady state from the data, and ratios with their CI in tables."""

from __future__ import annotations

import json

import numpy as np
import pytest

from backends.base import EpochLog
from backends.registry import backend_spec, base_name
from benchmarks.cli import main
from benchmarks.commands.flags import parse_backends
from benchmarks.harness.parent import child_jobs
from benchmarks.harness.training import TimedEpoch, summarize_timing
from benchmarks.report.tables import floor_cell, group_runs, table_rows, text_report
from common.config import ExperimentConfig
from common.job import DEFAULT_ROUNDS, Job
from common.results import Results, RunResult, load_results
from common.validation import ConfigError


def test_a_backend_named_twice_runs_twice_under_numbered_labels():
    assert parse_backends(["flax,keras", "flax"]) == ("flax#1", "keras", "flax#2")
    assert parse_backends(["flax,keras"]) == ("flax", "keras")
    assert (base_name("flax#2"), base_name("keras-jax"), base_name("#2")) == ("flax", "keras-jax", "#2")
    assert backend_spec("flax-vmap#1").name == "flax-vmap"
    Job(backends=("flax#1", "flax#2"))  # distinct labels: a valid job


def test_rounds_rotate_the_order_and_each_part_is_one_round():
    job = Job(backends=("keras", "flax", "keras-jax"), rounds=3)
    assert [(child.round, child.job.backend) for child in child_jobs(job)] == [
        (0, "keras"), (0, "flax"), (0, "keras-jax"), (1, "flax"), (1, "keras-jax"), (1, "keras"),
        (2, "keras-jax"), (2, "keras"), (2, "flax")]
    assert all(child.job.rounds == 1 for child in child_jobs(job))
    # A backend that trains every seed in one program gets them together, once per round.
    vmapped = Job(backends=("flax-vmap", "flax"), seeds=(0, 1), rounds=2)
    assert [(child.round, child.job.backend, child.job.seeds) for child in child_jobs(vmapped)] == [
        (0, "flax-vmap", (0, 1)), (0, "flax", (0,)), (0, "flax", (1,)),
        (1, "flax", (0,)), (1, "flax-vmap", (0, 1)), (1, "flax", (1,))]


def test_rounds_are_validated_and_old_jobs_ran_once():
    assert Job(backends=("flax",)).rounds == DEFAULT_ROUNDS
    with pytest.raises(ConfigError, match="invalid config: rounds=0; expected an integer >= 1"):
        Job(backends=("flax",), rounds=0)
    saved = Job(backends=("flax",)).to_dict()
    del saved["rounds"]  # a results.json from before rounds existed
    assert Job.from_dict(saved).rounds == 1


def timed(seconds: list[float]) -> list[TimedEpoch]:
    log = EpochLog(np.ones(4), np.ones(4), np.full(4, 32))
    clock, epochs = 0.0, []
    for duration in seconds:
        epochs.append(TimedEpoch(log, clock, clock + duration))
        clock += duration
    return epochs


@pytest.mark.parametrize("seconds, start, found", [
    ([5.0, 1.0, 1.02, 0.98, 1.0], 1, True),
    ([5.0, 2.0, 1.0, 1.01, 0.99, 1.0], 2, True),  # a slow second epoch is warm-up too
    ([5.0, 3.0, 2.0, 1.5, 1.2, 1.0], 1, False),  # still speeding up: no steady state
    ([5.0, 1.0], 1, False),  # too few epochs to tell
])
def test_steady_state_is_found_from_the_epoch_times(seconds, start, found):
    timing = summarize_timing(timed(seconds), 128, sum(seconds), None)
    assert (timing["steady_from_epoch"], timing["steady_state_found"]) == (start, found)
    assert timing["epoch_s_median"] == pytest.approx(np.median(seconds[start:]))


def interleaved(epoch_s: dict[str, list[float]], origin_rounds: int | None = None) -> Results:
    """Results of backends whose round r took epoch_s[backend][r] per steady epoch (three epochs a run)."""
    backends = tuple(epoch_s)
    rounds = len(next(iter(epoch_s.values())))
    runs = [RunResult(backend, 0, "cpu", round=r, timing={"epoch_s_median": seconds, "steady_from_epoch": 1},
                      history=[{"epoch": e + 1, "loss": 0.5, "accuracy": 0.9, "val_loss": 0.5, "val_accuracy": 0.9,
                                "epoch_s": seconds * (3 if e == 0 else 1 + 0.01 * e)} for e in range(4)])
            for r in range(rounds) for backend, seconds in ((b, epoch_s[b][r]) for b in backends)]
    job = Job(backends=backends, rounds=rounds, config=ExperimentConfig(epochs=4))
    return Results(created="2026-12-03T00:00:00+00:00", environment={"hostname": "m"}, job=job, runs=runs)


def speed_cells(*results_list: Results) -> dict[str, str]:
    return {row["run"]: row["speed vs keras"] for row in table_rows(group_runs(results_list))}


def test_speed_vs_keras_has_a_ci_over_rounds_and_a_verdict():
    drift = [1.0, 1.6, 1.2, 2.0, 1.3]  # the machine's speed, common to both backends of a round
    cells = speed_cells(interleaved({"keras": [3.0 * d for d in drift],
                                     "flax": [1.0 * d * (1 + 0.02 * (-1) ** r) for r, d in enumerate(drift)],
                                     "flax-fused": [2.94 * d * (1 + 0.005 * (-1) ** r) for r, d in enumerate(drift)]}))
    assert cells["keras · cpu ×5 rounds"] == "1.00x"
    # Paired by round, the drift cancels: a tight interval around 3x.
    estimate, low, high, verdict = parse_ratio(cells["flax · cpu ×5 rounds"])
    assert 2.9 < low <= estimate <= high < 3.1 and verdict == "faster"
    # 3.0 / 2.94: an interval clear of 1 but inside the machine's noise threshold, so not distinguishable.
    estimate, low, high, verdict = parse_ratio(cells["flax-fused · cpu ×5 rounds"])
    assert 1 < low and high < 1.05 and verdict == "~"


def parse_ratio(cell: str) -> tuple[float, float, float, str]:
    ratio, interval, verdict = cell.split(" ", 1)[0], cell.split("[")[1].split("]")[0], cell.rsplit(" ", 1)[1]
    low, high = (float(value) for value in interval.split(", "))
    return float(ratio.rstrip("x")), low, high, verdict


def test_one_round_says_there_is_no_ci_and_separate_sessions_compare_unpaired():
    once = interleaved({"keras": [3.0], "flax": [1.0]})
    assert speed_cells(once)["flax · cpu"] == "3.00x (no CI: 1 round)"
    # Two sessions' keras against a third's flax: no runs ran side by side, so the sides are resampled apart.
    sessions = [interleaved({"keras": [3.0, 3.3, 2.8]}), interleaved({"flax": [1.0, 1.1, 0.95]})]
    for results in sessions:
        results.environment["hostname"] = "m"
    cell = speed_cells(*sessions)["flax · cpu ×3 rounds"]
    estimate, low, high, verdict = parse_ratio(cell.replace(" ×3 rounds", ""))
    assert low < estimate < high and verdict == "faster"


def test_seeds_of_one_program_are_set_against_every_seed_of_the_reference():
    # keras trains each seed in its own process, flax-vmap both seeds in one program: per round, the program's
    # epochs once against both keras processes' epochs (seed 1 here twice as slow as seed 0).
    results = interleaved({"keras": [3.0, 3.0, 3.0], "flax-vmap": [1.0, 1.0, 1.0]})
    for run in [run for run in results.runs]:
        twin = RunResult(run.backend, 1, "cpu", round=run.round, timing=dict(run.timing),
                         history=[dict(entry, epoch_s=entry["epoch_s"] * (2 if run.backend == "keras" else 1))
                                  for entry in run.history])
        if run.backend == "flax-vmap":
            run.timing["seeds_in_program"] = twin.timing["seeds_in_program"] = 2
        results.runs.append(twin)
    cell = speed_cells(results)["flax-vmap · cpu ×2 seeds ×3 rounds (one program; times are for all 2)"]
    assert parse_ratio(cell)[0] > 4  # seed 0 alone would give 3.0x


def test_floor_cell_gives_a_median_with_its_ci_and_never_a_ratio_below_one():
    assert floor_cell([2.0, 2.2, 2.1, 2.3, 1.9]).startswith("2.10 [")
    assert floor_cell([2.5]) == "2.50 (no CI: 1 run)"
    assert floor_cell([0.9, 2.0]) == "floor error"
    assert floor_cell([None]) == "—"


def test_unsteady_runs_are_named_in_the_report():
    results = interleaved({"keras": [3.0, 3.1, 2.9], "flax": [1.0, 1.1, 0.9]})
    results.runs[1].timing["steady_state_found"] = False
    assert "flax · cpu: no steady state in 1 of 3 runs" in text_report([results])


def test_a_run_in_rounds_trains_each_round_in_fresh_processes_and_resumes_by_round(tmp_path, mnist_data_dir, capsys):
    out = tmp_path / "aa"
    argv = ["run", "--backend", "flax,flax", "--rounds", "2", "--timing-rounds", "0", "--no-floor", "--epochs", "1", "--train-limit", "320",
            "--test-limit", "100", "--quiet", "--data-dir", str(mnist_data_dir), "--out", str(out)]
    assert main(argv) == 0
    results = load_results(out)
    assert [(run.backend, run.round) for run in results.runs] == [("flax#1", 0), ("flax#2", 0), ("flax#2", 1),
                                                                   ("flax#1", 1)]
    assert sorted(path.name for path in (out / "logs").glob("flax*.log")) == [
        "flax#1-seed0-round1.log", "flax#1-seed0-round2.log", "flax#2-seed0-round1.log", "flax#2-seed0-round2.log"]
    # Both labels train the same code from the same weights and batches: the same losses, to the bit.
    assert results.runs[0].step_losses == results.runs[1].step_losses == results.runs[3].step_losses
    printed = capsys.readouterr().out
    assert "flax#1 ×2 rounds" in printed and "note: every row ran on cpu" in printed  # the terminal's short labels
    # One round's run lost: --resume trains that (backend, round) alone.
    saved = json.loads((out / "results.json").read_text())
    saved["runs"][2]["status"] = "failed"
    (out / "results.json").write_text(json.dumps(saved))
    kept = {name: (out / "logs" / name).stat().st_mtime_ns for name in ("flax#1-seed0-round1.log",
                                                                         "flax#2-seed0-round1.log")}
    assert main(["run", "--resume", str(out), "--quiet"]) == 0
    assert [(run.backend, run.round, run.status) for run in load_results(out).runs] == [
        ("flax#1", 0, "ok"), ("flax#2", 0, "ok"), ("flax#2", 1, "ok"), ("flax#1", 1, "ok")]
    assert {name: (out / "logs" / name).stat().st_mtime_ns for name in kept} == kept
