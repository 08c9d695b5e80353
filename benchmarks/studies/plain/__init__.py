"""Plain scripts: the recipe as a framework's user writes it, importing nothing from mnist-bench, timed beside the
harness' rows by `benchmarks.studies.plain_vs_harness` to show what the harness itself costs."""
