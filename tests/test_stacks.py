"""Stacks (`run --stack NAME=REQ`): specs parsed as requirements; bad stacks refused in one line before any training;
a real second stack built with uv (one small package at another version, from uv's cache where it is warm), reused,
rebuilt when damaged, and a two-stack run whose workers ran in each stack's own interpreter."""

from __future__ import annotations

import json
import subprocess

import pytest

from benchmarks.cli import main
from benchmarks.harness import stacks
from benchmarks.report.tables import group_runs, table_rows
from common.results import load_results

# flax: small, pure Python, the framework each flax worker records the version of (the lock has 0.12.8)
SMALL_STACK = "old=flax==0.12.7"


@pytest.mark.parametrize("value, message", [
    ("jax09", "expected NAME=REQ[,REQ...]"),
    ("current=jax==0.9.2", "not 'current'"),
    ("Big Name=jax==0.9.2", "must be lower-case"),
    ("x=jax===", "'jax===' is not a requirement"),
    ("x=https://example.com/jax.whl", "is not a requirement"),
    ('x=jax==0.9.2; python_version < "3"', "not a URL or a marker"),
])
def test_a_bad_spec_is_one_line_and_exit_2(value, message, tmp_path, capsys):
    assert main(["run", "--stack", value, "--out", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and message in error and "--stack" in error
    assert not (tmp_path / "run").exists()


def test_specs_parse_into_requirements():
    spec = stacks.parse_stack("jax09=jax==0.9.2, jaxlib==0.9.2")
    assert spec == stacks.StackSpec("jax09", ("jax==0.9.2", "jaxlib==0.9.2"))
    with pytest.raises(stacks.StackError, match="jax09 named twice"):
        stacks.parse_stacks(["jax09=jax==0.9.2", "jax09=jax==0.9.1"])


@pytest.fixture(scope="module")
def stacks_dir(tmp_path_factory):
    """Stacks kept in this module's own folder: built by the first test that needs one, reused by the others."""
    folder = tmp_path_factory.mktemp("stacks")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(stacks.STACKS_DIR_ENV, str(folder))
        yield folder


def test_stacks_that_cannot_be_had_stop_the_run_before_training(tmp_path, stacks_dir, mnist_data_dir, capsys,
                                                                monkeypatch):
    argv = ["run", "--backend", "flax", "--epochs", "1", "--timing-rounds", "0", "--data-dir", str(mnist_data_dir)]
    assert main([*argv, "--stack", "ghost=jax==0.0.999", "--out", str(tmp_path / "a")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and error.startswith("mnist-bench: error: --stack ghost: jax==0.0.999 do not resolve")
    assert "jax==0.0.999" in error.split("requirements: ", 1)[1]  # uv's own reason follows
    assert main([*argv, "--stack", "clash=flax==0.12.8,jax==0.9.2", "--out", str(tmp_path / "b")]) == 2
    assert "--stack clash:" in capsys.readouterr().err
    # No network and no cache: uv cannot resolve anything; said in one line, nothing built.
    monkeypatch.setenv("UV_OFFLINE", "1")
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "empty-cache"))
    assert main([*argv, "--stack", SMALL_STACK, "--out", str(tmp_path / "c")]) == 2
    assert "--stack old:" in capsys.readouterr().err
    assert not any((tmp_path / name).exists() for name in "abc")
    assert not list(stacks_dir.glob("ghost-*")) and not list(stacks_dir.glob("clash-*"))


def test_a_two_stack_run_trains_each_backend_in_its_stacks_interpreter(tmp_path, stacks_dir, mnist_data_dir, capsys):
    out = tmp_path / "run"
    assert main(["run", "--stack", SMALL_STACK, "--backend", "flax", "--epochs", "1", "--train-limit", "320",
                 "--test-limit", "100", "--rounds", "1", "--timing-rounds", "0", "--no-floor", "--quiet",
                 "--data-dir", str(mnist_data_dir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "flax@current" in printed and "flax@old" in printed
    results = load_results(out)
    cells = {row["run"]: row["speed vs current"] for row in table_rows(group_runs([results]))}
    assert cells["flax@current · cpu"] == "1.00x"
    assert cells["flax@old · cpu"].endswith("(no CI: 1 round)")  # each row against its twin on the running stack
    assert results.job.backends == ("flax@current", "flax@old")
    old = results.job.stacks["old"]
    assert old["requirements"] == ["flax==0.12.7"] and old["resolved"]["flax"] == "0.12.7"
    assert old["moved"]["flax"][1] == "0.12.7" and set(old["moved"]) == {"flax"}  # nothing else had to move
    assert all(run.status == "ok" for run in results.runs)
    # Each worker reports the flax it trained with: the stack's row ran in the stack's interpreter.
    assert {run.backend: run.versions["flax"] for run in results.runs} == {
        "flax@current": old["moved"]["flax"][0], "flax@old": "0.12.7"}
    version = subprocess.run([old["python"], "-c", "import flax, benchmarks; print(flax.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert version == "0.12.7"  # the stack's interpreter has its pin and the project
    # Built once, then reused; a damaged one (its info file unreadable) is removed and built again, never used.
    (environment,) = [path for path in stacks_dir.iterdir() if path.is_dir()]
    again = stacks.build_stack(stacks.parse_stack(SMALL_STACK))
    assert again.path == str(environment) and again.python == old["python"]
    marker = environment / "left-by-the-first-build"
    marker.write_text("")
    (environment / stacks.INFO_FILE).write_text("{")
    rebuilt = stacks.build_stack(stacks.parse_stack(SMALL_STACK))
    assert rebuilt.path == str(environment) and not marker.exists()
    info = json.loads((environment / stacks.INFO_FILE).read_text())
    assert info["complete"] is True and info["project"] == str(stacks.project_root())  # this checkout's code in it


def test_verify_judges_each_stack_against_float64_and_the_stacks_against_each_other(tmp_path, stacks_dir,
                                                                                  mnist_data_dir, capsys):
    out = tmp_path / "verify"
    assert main(["verify", "--stack", SMALL_STACK, "--backend", "flax", "--steps", "3", "--quiet",
                 "--data-dir", str(mnist_data_dir), "--out", str(out)]) == 0
    verification = json.loads((out / "verify.json").read_text())
    assert set(verification["backends"]) == {"flax@current", "flax@old"}
    assert all(entry["passed"] for entry in verification["backends"].values())
    assert [pair["pair"] for pair in verification["pairs"]] == [["flax@current", "flax@old"]]
    assert verification["job"]["stacks"]["old"]["resolved"]["flax"] == "0.12.7"


def test_a_sweep_takes_the_stacks_as_an_axis_and_ray_refuses_them(tmp_path, stacks_dir, capsys):
    assert main(["sweep", "--stack", SMALL_STACK, "--backend", "flax,keras-jax", "--dry-run", "--quiet"]) == 0
    ids = capsys.readouterr().out.split()
    assert [trial.split("-b32")[0] for trial in ids] == ["flax@current", "keras-jax@current", "flax@old",
                                                         "keras-jax@old"]
    assert main(["sweep", "--stack", SMALL_STACK, "--backend", "flax", "--executor", "ray",
                 "--out", str(tmp_path / "ray")]) == 2
    assert "--stack with --executor ray" in capsys.readouterr().err and not (tmp_path / "ray").exists()
