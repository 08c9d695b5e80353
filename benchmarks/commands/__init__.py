"""One module per `mnist-bench` command, each adding its own arguments; `benchmarks/cli.py` collects them."""
