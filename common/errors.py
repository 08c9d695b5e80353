"""Exit statuses of every mnist-bench process, and the one error base class that carries its own.

Every error a user can cause (a bad flag, unreadable data, a backend that cannot do what was asked)
derives from `MnistBenchError`; the CLI prints it as one line and exits with its `exit_code`, so no
module has to import the CLI, and the CLI lists no error types by hand.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1  # a run failed or diverged (results are still written)
EXIT_USAGE = 2  # bad flags or input: nothing was started or written
# A stopped command exits 128 + the signal, as shells report it: 130 for Ctrl-C, 143 for SIGTERM
# (benchmarks.harness.children.stop_exit_status).
EXIT_BROKEN_PIPE = 141  # the reader of our output left (`| head`), as shells report SIGPIPE (128 + 13)


class MnistBenchError(Exception):
    """A problem the user can fix, named in one line; `exit_code` is the status the CLI exits with."""

    exit_code = EXIT_USAGE
    # Printed before the message, e.g. "--out: " for an unusable output folder.
    prefix = ""
