"""The child process of `mnist-bench run`: trains one job (one backend, its seeds) and reports back.

Child usage (benchmarks/harness/children.py): python -m benchmarks.harness.worker JOB.json RESULT.json [PROFILE_DIR]
JOB.json is a `common.job.Job` with one backend; PROFILE_DIR is where a `--profile` job's trace goes. Progress goes to stdout as JSON lines prefixed with
EVENT_PREFIX (frameworks may print there too); the RunResults (one per seed of the job) are written
atomically to RESULT.json as a JSON list, also for a diverged, failed or interrupted run, with every
epoch it completed.
"""

from __future__ import annotations

import time

ENTERED_AT = time.monotonic()  # before anything heavy: the end of the interpreter's start-up phase

import dataclasses  # noqa: E402 - after the clock on purpose
import json  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402

from benchmarks.harness.children import stop_exit_status, stop_on_signals, stop_reason  # noqa: E402
from common.errors import EXIT_FAILED, EXIT_OK  # noqa: E402

EVENT_PREFIX = "@mnist-bench "
STEP_EVENT_INTERVAL_S = 0.25  # progress lines per second are capped so reporting costs nothing


def make_event_emitter(stream):
    """on_event(kind, payload) that writes EVENT_PREFIX + JSON lines, step events at most every 0.25 s."""
    last_step_event = [0.0]

    def on_event(kind, payload):
        now = time.monotonic()
        if (kind == "step" and now - last_step_event[0] < STEP_EVENT_INTERVAL_S
                and payload["step"] != payload["steps"]):
            return
        last_step_event[0] = now
        stream.write(EVENT_PREFIX + json.dumps({"event": kind, **payload}) + "\n")
        stream.flush()

    return on_event


def main(argv: list[str]) -> int:
    """Run the job in argv[0]; write the results to argv[1]; exit 0, 1 (failed) or 130 (interrupted)."""
    job_path, result_path, *profile_dir = argv
    stop_on_signals()
    from backends.registry import prepare_process
    from common.atomic import write_text_atomic
    from common.job import Job
    from common.results import RunResult

    with open(job_path, encoding="utf-8") as handle:
        job = Job.from_dict(json.load(handle))

    def write(runs):
        write_text_atomic(result_path, json.dumps([dataclasses.asdict(run) for run in runs], allow_nan=True))

    def stopped_before_training(status: str, error: str):
        return [RunResult(job.backend, seed, job.device, devices=job.devices, status=status, error=error)
                for seed in job.seeds]

    try:
        # Framework settings first, before anything can import a framework.
        prepare_process(job)
        from benchmarks.harness.training import RunStopped, train_and_evaluate

        try:
            runs = train_and_evaluate(job, make_event_emitter(sys.stdout), entered_at=ENTERED_AT,
                                      profile_dir=Path(profile_dir[0]) if profile_dir else None)
        except RunStopped as stopped:
            if stopped.__cause__ is not None:
                traceback.print_exception(stopped.__cause__)
            write(stopped.runs)
            return stopped.exit_code
    except KeyboardInterrupt as stop:
        write(stopped_before_training("interrupted", stop_reason(stop)))
        return stop_exit_status(stop)
    except Exception as error:  # noqa: BLE001 - any crash becomes a recorded failed run, not a lost one
        traceback.print_exc()
        write(stopped_before_training("failed", f"{type(error).__name__}: {error}".strip().splitlines()[0]))
        return EXIT_FAILED
    write(runs)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
