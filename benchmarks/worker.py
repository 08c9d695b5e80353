"""The child process of `mnist-bench run`: trains one (backend, seed) and reports back.

Usage: python -m benchmarks.worker JOB.json RESULT.json
Progress goes to stdout as JSON lines prefixed with EVENT_PREFIX (frameworks may print there too);
the RunResults (one per seed in the job) are written atomically to RESULT.json as a JSON list, also
for a diverged, failed or interrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
import traceback

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
    """Run the job described in argv[0]; write the result to argv[1]; exit 0, 1 (failed) or 130."""
    job_path, result_path = argv
    from common.atomic import write_text_atomic
    from common.config import ExperimentConfig
    from common.results import RunResult

    job = json.loads(open(job_path, encoding="utf-8").read())
    config = ExperimentConfig.from_dict(job["config"])
    on_event = make_event_emitter(sys.stdout)

    seeds = tuple(job.get("seeds") or (config.seed,))

    def write(results):
        write_text_atomic(result_path, json.dumps([dataclasses.asdict(r) for r in results], allow_nan=True))

    try:
        from benchmarks.training import train_and_evaluate

        results = train_and_evaluate(config, job["backend"], job["device"], job.get("data_dir"), on_event,
                                     job.get("target_accuracy", 0.97), seeds)
    except KeyboardInterrupt:
        write([RunResult(job["backend"], seed, job["device"], status="interrupted",
                         error="interrupted by the user (Ctrl-C)") for seed in seeds])
        return 130
    except Exception as error:  # noqa: BLE001 - any crash becomes a recorded failed run, not a lost one
        traceback.print_exc()
        message = f"{type(error).__name__}: {error}".strip().splitlines()[0]
        write([RunResult(job["backend"], seed, job["device"], status="failed", error=message) for seed in seeds])
        return 1
    write(results)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
