"""A stand-in worker that fails on purpose for one backend, to test how the harness records failures.

CRASH_BACKEND names the backend; CRASH_MODE is 'kill' (SIGKILL, as the OOM killer does), 'kill-after-epoch'
(SIGKILL once the first epoch's event is out: the worker never writes its result) or 'raise' (a Python
exception inside the backend factory). Other backends run the real worker.
"""

import json
import os
import signal
import sys

from benchmarks.harness import training, worker

job = json.loads(open(sys.argv[1], encoding="utf-8").read())
if job["backends"] == [os.environ.get("CRASH_BACKEND")]:
    if os.environ.get("CRASH_MODE") == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get("CRASH_MODE") == "kill-after-epoch":
        emitter = worker.make_event_emitter

        def make_dying_emitter(stream):
            on_event = emitter(stream)

            def dying(kind, payload):
                on_event(kind, payload)
                if kind == "epoch":
                    stream.flush()
                    os.kill(os.getpid(), signal.SIGKILL)
            return dying

        worker.make_event_emitter = make_dying_emitter
    if os.environ.get("CRASH_MODE") == "raise":
        def broken_factory(job, initial_weights):
            raise RuntimeError(f"injected failure in {job.backend}")

        training.create_trainer = broken_factory
sys.exit(worker.main(sys.argv[1:]))
