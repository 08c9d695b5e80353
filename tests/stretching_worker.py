"""A stand-in worker that gives seed 1 more epochs than any machine finishes, so a test can interrupt it.

Seed 0 trains as asked and completes; seed 1's job is rewritten to STRETCH_EPOCHS epochs and then run by
the real worker, so it can only end by Ctrl-C, however fast the machine is.
"""

import json
import sys

from benchmarks import worker

STRETCH_EPOCHS = 100_000

job_path, result_path = sys.argv[1:]
job = json.loads(open(job_path, encoding="utf-8").read())
if job["seeds"] == [1]:
    job["config"]["epochs"] = STRETCH_EPOCHS
    with open(job_path, "w", encoding="utf-8") as handle:
        json.dump(job, handle)
sys.exit(worker.main([job_path, result_path]))
