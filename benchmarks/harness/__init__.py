"""Running a job: the parent that starts one worker process per (backend, seeds), the worker, the measured
training loop, its costs, and the one way a child process is started."""
