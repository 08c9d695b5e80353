"""The pytest-benchmark suite: its runner (one pytest process per backend), conftest and benchmark files."""
