"""Exit statuses of every mnist-bench process, the CLI and its workers alike."""

EXIT_OK = 0
EXIT_FAILED = 1  # a run failed or diverged (results are still written)
EXIT_USAGE = 2  # bad flags or input: nothing was started or written
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT (128 + 2)
