"""A stand-in worker that fails on purpose for one backend, to test how the harness records failures.

CRASH_BACKEND names the backend; CRASH_MODE is 'kill' (SIGKILL, as the OOM killer does) or 'raise'
(a Python exception inside the backend factory). Other backends run the real worker.
"""

import json
import os
import signal
import sys

from benchmarks import training, worker

job = json.loads(open(sys.argv[1], encoding="utf-8").read())
if job["backends"] == [os.environ.get("CRASH_BACKEND")]:
    if os.environ.get("CRASH_MODE") == "kill":
        os.kill(os.getpid(), signal.SIGKILL)

    def broken_factory(name):
        raise RuntimeError(f"injected failure in {name}")

    training.get_factory = broken_factory
sys.exit(worker.main(sys.argv[1:]))
