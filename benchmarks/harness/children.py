"""How every mnist-bench process starts a child and stops itself: one hand-off convention, one stop policy
(Ctrl-C and SIGTERM alike), one way an error becomes an exit status.

Every child is `python -m MODULE REQUEST RESULT [EXTRA...]`: the parent writes REQUEST (a JSON job, or for
verify's probes their inputs) before it starts the child, and the child writes RESULT atomically before it
exits, so a parent never reads half a result; what the child prints is progress or log, never the result.
The children: the run worker (`benchmarks.harness.worker`), the roofline probe (`benchmarks.measure.roofline`),
verify's probes (`benchmarks.harness.verify`) and a sweep's trials (`benchmarks.sweep.trial`). The suite's
pytest processes and the frameworks' device probes are other programs' command lines.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence

from common.atomic import release_claims
from common.errors import EXIT_BROKEN_PIPE, MnistBenchError

# Children flush every line at once: the parent reads progress events as they happen.
CHILD_ENVIRONMENT = {"PYTHONUNBUFFERED": "1"}
# What stops a run as Ctrl-C does: SIGINT from a terminal, and SIGTERM from `timeout`, a cancelled CI job or a batch
# scheduler. Either way what was trained is saved (recorded `interrupted`), and the exit status is 128 + the signal.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequested(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; `signum` says which."""

    def __init__(self, signum: int):
        super().__init__()
        self.signum = signum


def python_module(module: str) -> tuple[str, ...]:
    """The command that runs `module` as a child in this interpreter: (python, -m, module)."""
    return (sys.executable, "-m", module)


def child_command(command: Sequence[str], *paths) -> list[str]:
    """`command` followed by the child's REQUEST, RESULT and any extra paths."""
    return [*command, *map(str, paths)]


def child_environment(**extra: str) -> dict[str, str]:
    """This process' environment, with what every child needs and `extra`."""
    return {**os.environ, **CHILD_ENVIRONMENT, **extra}


def spawn(command: Sequence[str], *paths, env: dict[str, str] | None = None, **popen_options) -> subprocess.Popen:
    """Start a child (`command` + its paths) under the convention above; `popen_options` go to Popen."""
    return subprocess.Popen(child_command(command, *paths), env=env or child_environment(), **popen_options)


def run(command: Sequence[str], *paths, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run a child to its end, its output captured as text (for the parent's log on failure)."""
    return subprocess.run(child_command(command, *paths), env=env or child_environment(), capture_output=True,
                          text=True)


def stop_once(signum, frame):
    """SIGINT and SIGTERM handler: the first raises StopRequested; later ones are ignored, so they cannot cut the
    saving of what was done (a terminal's Ctrl-C reaches parent and worker, the parent forwards one more, `timeout`
    signals the whole process group, and impatient users press twice)."""
    for stopping in STOP_SIGNALS:
        signal.signal(stopping, signal.SIG_IGN)
    raise StopRequested(signum)


def stop_on_signals() -> None:
    """From now on, in this process, SIGINT and SIGTERM follow `stop_once` (a child's whole life)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, stop_once)


@contextlib.contextmanager
def first_stop_only():
    """Within the block, SIGINT and SIGTERM follow `stop_once`; the previous handlers come back afterwards."""
    previous = {signum: signal.signal(signum, stop_once) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def stop_signal(stop: BaseException) -> int:
    """The signal behind a stop: its own `signum` where it carries one, else SIGINT (a plain KeyboardInterrupt)."""
    return getattr(stop, "signum", signal.SIGINT)


def stop_exit_status(stop: BaseException) -> int:
    """The exit status a stopped command ends with, as shells report a signal: 130 for Ctrl-C, 143 for SIGTERM."""
    return 128 + stop_signal(stop)


def stop_reason(stop: BaseException) -> str:
    """What a run stopped this way is recorded with."""
    signum = stop_signal(stop)
    return ("interrupted by the user (Ctrl-C)" if signum == signal.SIGINT
            else f"stopped by {signal.Signals(signum).name}")


def stop_word(stop: BaseException) -> str:
    """'interrupted' (Ctrl-C) or 'stopped by SIGTERM', for the command's last line."""
    return "interrupted" if stop_signal(stop) == signal.SIGINT else stop_reason(stop)


def report_error(error: MnistBenchError) -> int:
    """Print `error` as the CLI's one line on stderr; return its exit code."""
    print(f"mnist-bench: error: {error.prefix}{error}", file=sys.stderr, flush=True)
    return error.exit_code


def guarded(action: Callable[[], int]) -> int:
    """Run `action`; an MnistBenchError becomes one line on stderr and its exit code, Ctrl-C exit 130 and
    SIGTERM 143."""
    try:
        code = action()
        sys.stdout.flush()  # a reader that left raises here, inside the handlers, not at interpreter exit
        return code
    except MnistBenchError as error:
        return report_error(error)
    except KeyboardInterrupt as stop:
        print(f"mnist-bench: {stop_word(stop)}", file=sys.stderr)
        return stop_exit_status(stop)
    except BrokenPipeError:
        # `mnist-bench show RUN | head`: the reader has all it wanted. Stop quietly, as Unix tools do; stdout
        # goes to /dev/null so that the interpreter's final flush cannot raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    finally:
        release_claims()  # the command's folders are free for the next one (in-process callers included)
