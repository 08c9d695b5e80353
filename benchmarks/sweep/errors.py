"""The sweep's own errors: one it cannot start with, a cluster lost mid-sweep, and a stop (Ctrl-C or SIGTERM) that
saved what was done."""

from __future__ import annotations

import signal
from pathlib import Path

from common.errors import EXIT_FAILED, MnistBenchError


class SweepError(MnistBenchError, RuntimeError):
    """The sweep cannot start as asked (exit code 2); nothing has been written."""


class ClusterLost(MnistBenchError, RuntimeError):
    """The Ray cluster's head stopped answering mid-sweep (exit code 1); the index records what ran."""

    exit_code = EXIT_FAILED


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM (`signum`) during a sweep; the finished trials are saved in `sweep_dir`."""

    def __init__(self, sweep_dir: Path, signum: int = signal.SIGINT):
        super().__init__(str(sweep_dir))
        self.sweep_dir, self.signum = sweep_dir, signum
