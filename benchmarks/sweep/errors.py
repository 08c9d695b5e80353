"""The sweep's own errors: one it cannot start with, and a Ctrl-C that saved what was done."""

from __future__ import annotations

from pathlib import Path

from common.errors import MnistBenchError


class SweepError(MnistBenchError, RuntimeError):
    """The sweep cannot start as asked (exit code 2); nothing has been written."""


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep; the finished trials are saved in `sweep_dir`."""

    def __init__(self, sweep_dir: Path):
        super().__init__(str(sweep_dir))
        self.sweep_dir = sweep_dir
