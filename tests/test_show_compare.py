"""`mnist-bench show` and `compare`: saved runs read back, across machines and schema versions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.cli import main
from common.results import load_results


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory, mnist_data_dir):
    """One small run of two backends through the real CLI, to read back."""
    out = tmp_path_factory.mktemp("runs") / "saved"
    code = main(["run", "--rounds", "1", "--timing-rounds", "0", "--no-floor", "--backend", "flax,keras-jax", "--epochs", "2", "--train-limit", "640", "--test-limit", "200",
                 "--quiet", "--data-dir", str(mnist_data_dir), "--out", str(out)])
    assert code == 0
    return code, out


def test_show_prints_the_table(saved_run, capsys):
    assert main(["show", str(saved_run[1])]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0] for line in out.splitlines() if line.strip()}
    # No keras in this run and no floor measured: those columns, empty, are left out of the terminal.
    assert {"flax", "keras-jax"} <= rows and "epoch s" in out and "every row ran on cpu" in out
    assert "speed vs keras" not in out.split("\n\n")[0].splitlines()[1]


def test_show_into_a_closed_pipe_stops_quietly(saved_run):
    # `mnist-bench show RUN | head -1`: the reader is gone before anything is written (its end closed first).
    reader, writer = os.pipe()
    os.close(reader)
    try:
        shown = subprocess.run([sys.executable, "-m", "benchmarks.cli", "show", str(saved_run[1])], stdout=writer,
                               stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(writer)
    assert shown.returncode == 141 and shown.stderr == ""


def test_compare_two_runs_labels_machines(saved_run, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    data = json.loads((saved_run[1] / "results.json").read_text())
    data["environment"]["hostname"] = "gpu-box"
    for run in data["runs"]:
        run["device"] = "gpu"
    (other / "results.json").write_text(json.dumps(data))
    assert main(["compare", str(saved_run[1]), str(other), "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert "flax · gpu · gpu-box" in out and "flax · cpu · " in out
    summary = (tmp_path / "cmp" / "summary.md").read_text()
    assert "gpu-box" in summary and (tmp_path / "cmp" / "plots" / "confusion.png").exists()


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"schema_version": 99, "created": "", "environment": {}, "config": {}, "runs": []}', "newer than"),
    ('{"schema_version": 1, "created": "", "environment": {}, "config": {}, "runs": [{"backend": "x"}]}',
     "runs[0] lacks 'seed'"),
])
def test_compare_rejects_bad_results_with_exit_2(tmp_path, capsys, content, message):
    (tmp_path / "results.json").write_text(content)
    assert main(["compare", str(tmp_path), "--out", str(tmp_path / "cmp")]) == 2
    assert message in capsys.readouterr().err
    assert main(["show", str(tmp_path / "missing")]) == 2


SCHEMA_1_RUN = Path(__file__).parent / "data" / "results-schema1.json"  # written by mnist-bench at d0090bd


def test_schema_1_results_are_still_read(tmp_path, saved_run, capsys):
    old = tmp_path / "old"
    old.mkdir()
    (old / "results.json").write_bytes(SCHEMA_1_RUN.read_bytes())
    results = load_results(old)
    assert results.schema_version == 1
    assert results.job.backends == ("flax", "flax-vmap") and results.job.seeds == (0, 1)
    assert results.job.target_accuracy == 0.97 and results.job.config.epochs == 2
    assert main(["show", str(old)]) == 0
    shown = capsys.readouterr().out
    assert "flax-vmap ×2 seeds" in shown and "note: flax-vmap · cpu: one program; times are for all 2" in shown
    assert main(["compare", str(old), str(saved_run[1]), "--out", str(tmp_path / "cmp")]) == 0
    assert (tmp_path / "cmp" / "summary.md").exists()
    assert main(["run", "--resume", str(old)]) == 2
    assert "schema 1" in capsys.readouterr().err
