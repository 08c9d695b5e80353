"""Running a job in child processes: `run`'s parent and its worker, the measured training loop and its costs,
`verify`'s probes, and the one way a child process is started."""
