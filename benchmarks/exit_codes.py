"""Exit statuses of every mnist-bench process, the CLI and its workers alike, and the Ctrl-C policy behind 130."""

import contextlib
import signal

from common.errors import EXIT_BROKEN_PIPE, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE  # noqa: F401


def interrupt_once(signum, frame):
    """SIGINT handler: the first Ctrl-C raises KeyboardInterrupt; later ones are ignored, so they cannot cut
    the saving of what was done (a terminal's Ctrl-C reaches parent and worker, the parent forwards one more,
    and impatient users press twice)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


@contextlib.contextmanager
def first_interrupt_only():
    """Within the block, SIGINT follows `interrupt_once`; the previous handler comes back afterwards."""
    previous = signal.signal(signal.SIGINT, interrupt_once)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
