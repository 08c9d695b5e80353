"""A stand-in worker that gives one (backend, seed) more epochs than any machine finishes, so a test can
interrupt it while it trains, however fast the machine is.

STRETCH names it as BACKEND:SEED; its job is rewritten to STRETCH_EPOCHS epochs and run by the real
worker. Every other job runs as asked.
"""

import json
import os
import sys

from benchmarks.harness import worker

STRETCH_EPOCHS = 100_000

job_path, result_path = sys.argv[1:]
with open(job_path, encoding="utf-8") as handle:
    job = json.load(handle)  # a common.job.Job as JSON
backend, seed = os.environ["STRETCH"].split(":")
if job["backends"] == [backend] and job["seeds"] == [int(seed)]:
    job["config"]["epochs"] = STRETCH_EPOCHS
    with open(job_path, "w", encoding="utf-8") as handle:
        json.dump(job, handle)
sys.exit(worker.main([job_path, result_path]))
