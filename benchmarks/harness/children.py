"""How every mnist-bench process starts a child and stops itself: one hand-off convention, one Ctrl-C policy,
one way an error becomes an exit status.

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
from common.errors import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, MnistBenchError

# Children flush every line at once: the parent reads progress events as they happen.
CHILD_ENVIRONMENT = {"PYTHONUNBUFFERED": "1"}


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


def report_error(error: MnistBenchError) -> int:
    """Print `error` as the CLI's one line on stderr; return its exit code."""
    print(f"mnist-bench: error: {error.prefix}{error}", file=sys.stderr, flush=True)
    return error.exit_code


def guarded(action: Callable[[], int]) -> int:
    """Run `action`; an MnistBenchError becomes one line on stderr and its exit code, Ctrl-C exit 130."""
    try:
        code = action()
        sys.stdout.flush()  # a reader that left raises here, inside the handlers, not at interpreter exit
        return code
    except MnistBenchError as error:
        return report_error(error)
    except KeyboardInterrupt:
        print("mnist-bench: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `mnist-bench show RUN | head`: the reader has all it wanted. Stop quietly, as Unix tools do; stdout
        # goes to /dev/null so that the interpreter's final flush cannot raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    finally:
        release_claims()  # the command's folders are free for the next one (in-process callers included)
