"""The rooms stay layered: import-linter checks pyproject.toml's contracts (no upward import, no circle in a room)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_no_import_runs_back_up_and_no_room_has_a_circle():
    checked = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache"], cwd=REPO,
                             capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0, checked.stdout[-4000:] + checked.stderr[-2000:]
    assert "Contracts: 2 kept, 0 broken." in checked.stdout


def test_every_room_of_the_package_has_its_layer():
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (layers,) = [contract["layers"] for contract in contracts if contract["type"] == "layers"]
    named = {module.strip() for layer in layers for module in layer.split("|")}
    rooms = {f"benchmarks.{path.parent.name}" for path in (REPO / "benchmarks").glob("*/__init__.py")}
    assert rooms | {"benchmarks.cli", "backends", "common"} == named
