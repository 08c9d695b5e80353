"""What the tests share besides fixtures: stand-in workers and probes run as scripts, and a trainer maker."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from common.config import ExperimentConfig
from common.job import Job
from common.weights import Weights


def make_trainer(backend: str, config: ExperimentConfig, initial_weights: Mapping[int, Weights], devices: int = 1):
    """The registry's trainer of `backend` for these seeds on `devices` CPU devices (this process prepared already)."""
    from backends.registry import create_trainer

    return create_trainer(Job(backends=(backend,), config=config, seeds=tuple(initial_weights), devices=devices),
                          initial_weights)


def wait_for_text(path: Path, text: str, process: subprocess.Popen) -> None:
    """Block until `path` contains `text` (evidence, not a guess at how long it takes); fail if the process ends first."""
    while process.poll() is None:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        time.sleep(0.05)
    raise AssertionError(f"process exited with {process.returncode} before {path.name} showed {text!r}: "
                         f"{process.stderr.read()[-2000:]}")


def cli_without(module: str, argv: list[str]) -> subprocess.CompletedProcess:
    """`mnist-bench ARGV` in a fresh interpreter where `module` cannot be imported, as where it is not installed."""
    code = f"import sys; sys.modules[{module!r}] = None; from benchmarks.cli import main; sys.exit(main({argv!r}))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
