"""`mnist-bench verify`: the equivalence proof as a command, and the mistakes it must catch."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from benchmarks.harness import verify
from benchmarks.cli import main
from backends import registry
from common.workloads import mlp
from helpers import broken_backends

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
BROKEN_WORKER = (sys.executable, str(Path(broken_backends.__file__)))


@pytest.fixture(scope="module")
def verified(tmp_path_factory, mnist_data_dir):
    """`mnist-bench verify` over every registered backend, as a user runs it (100 steps)."""
    out = tmp_path_factory.mktemp("verify")
    code = main(["verify", "--data-dir", str(mnist_data_dir), "--out", str(out), "--quiet"])
    return code, out, json.loads((out / verify.VERIFY_FILE).read_text())


def test_every_registered_backend_passes(verified, capsys):
    code, out, report = verified
    assert code == 0
    assert report["schema_version"] == verify.SCHEMA_VERSION and report["passed"] is True
    assert list(report["backends"]) == list(registry.BACKENDS) and report["steps"] == 100
    assert len(report["pairs"]) == len(registry.BACKENDS) * (len(registry.BACKENDS) - 1) // 2
    for name, entry in report["backends"].items():
        assert entry["passed"], name
        for check, result in entry["checks"].items():
            # The figures in verify.json are the ones judged, against the one tolerance table.
            assert result["tolerance"] == mlp.TOLERANCES[check].float64
            assert 0 <= result["value"] <= result["tolerance"], (name, check)
        assert len(entry["loss_rel_per_step"]) == len(entry["weight_diff_per_step"]) == 100
    assert report["job"]["precision"] == "highest" and report["tolerances"]["forward"]["why"]
    # Each framework's own word, read inside its probe process: what the backends really trained at.
    assert report["backends"]["flax"]["precision_in_force"] == {"jax": "highest"}
    assert report["backends"]["keras"]["precision_in_force"] == {"tensorflow": "highest (tf32 off)"}
    for plot in ("verify_loss.png", "verify_weights.png"):
        assert (out / plot).read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("mistake", broken_backends.MISTAKES)
def test_a_backend_made_wrong_fails_verify_naming_itself_and_the_quantity(monkeypatch, tmp_path, capsys,
                                                                         mnist_data_dir, mistake):
    monkeypatch.setattr(verify, "VERIFY_WORKER", BROKEN_WORKER)
    for name, spec in {**registry.BACKENDS}.items():
        monkeypatch.setitem(registry.BACKENDS, name, spec)
    broken_backends.register()
    code = main(["verify", "--backend", f"flax,{mistake}", "--steps", "10", "--data-dir", str(mnist_data_dir),
                 "--out", str(tmp_path / "v"), "--quiet"])
    out = capsys.readouterr().out
    assert code == 1
    report = json.loads((tmp_path / "v" / verify.VERIFY_FILE).read_text())
    assert report["backends"]["flax"]["passed"] and not report["backends"][mistake]["passed"]
    assert report["passed"] is False
    # The first steps give the mistake away, against float64 and against the correct backend; the message
    # names the backend and the quantity.
    assert f"FAIL {mistake}: first 5 steps max |Δw| vs float64 = " in out
    assert f"FAIL flax vs {mistake}: first 5 steps max |Δw| = " in out
    assert "FAIL flax:" not in out


def test_verify_at_default_precision_trains_at_each_frameworks_default(tmp_path, mnist_data_dir):
    """verify --precision default once trained at highest (the precision was dropped on the way to the probe)."""
    out = tmp_path / "v"
    code = main(["verify", "--precision", "default", "--backend", "flax,keras", "--steps", "3", "--data-dir",
                 str(mnist_data_dir), "--out", str(out), "--quiet"])
    report = json.loads((out / verify.VERIFY_FILE).read_text())
    assert code == 0 and report["job"]["precision"] == "default"
    assert report["backends"]["flax"]["precision_in_force"] == {"jax": "default"}
    assert report["backends"]["keras"]["precision_in_force"] == {"tensorflow": "tf32 allowed"}


def test_bad_steps_exit_2(capsys):
    assert main(["verify", "--steps", "0"]) == 2
    assert "--steps: 0; expected an integer >= 1" in capsys.readouterr().err
