"""Framework-free benchmarks: the data layer, and the harness' own per-step cost."""

from __future__ import annotations

import io
import json
import time
from contextlib import redirect_stdout

import numpy as np
import pytest

from benchmarks.harness import worker
from common import mnist


def test_mnist_cold_decode(benchmark, rounds):
    """Decoding the four gzip files from scratch (what the first load pays)."""
    source = mnist.load_mnist(progress=False)
    files = {key: _source_dir(source) / f"{stem}.gz" for key, stem in mnist.IDX_STEMS.items()}
    if not all(path.is_file() for path in files.values()):
        pytest.skip(f"MNIST came from {source.source}, not the four .gz files; set MNIST_BENCH_DATA to them")
    benchmark.group = "data layer"
    arrays = benchmark.pedantic(lambda: mnist._decode_idx_set(files), rounds=min(rounds, 3), warmup_rounds=0)
    assert arrays[0].shape == (60_000, 28, 28) and len(arrays[3]) == 10_000
    benchmark.extra_info.update(source=str(_source_dir(source)), images=70_000)


def test_mnist_cached_load(benchmark, rounds):
    """A later load: content hash of the sources + memory-mapped decoded arrays."""
    mnist.load_mnist(progress=False)
    benchmark.group = "data layer"
    data = benchmark.pedantic(lambda: mnist.load_mnist(progress=False), rounds=rounds * 3, warmup_rounds=1)
    assert isinstance(data.train_images, np.memmap) and data.train_images.shape == (60_000, 28, 28)


def test_harness_step_overhead(benchmark):
    """What the progress reporting costs per training step, to set against a step time of ~0.5-5 ms."""
    steps = 10_000
    sink = io.StringIO()
    on_event = worker.make_event_emitter(sink)

    def report_steps():
        for step in range(steps):
            on_event("step", dict(epoch=1, step=step + 1, steps=steps, loss=0.1, accuracy=0.9))

    benchmark.group = "harness overhead"
    with redirect_stdout(io.StringIO()):
        benchmark.pedantic(report_steps, rounds=5, warmup_rounds=1)
    per_step_us = benchmark.stats.stats.mean / steps * 1e6
    lines = [json.loads(line[len(worker.EVENT_PREFIX):]) for line in sink.getvalue().splitlines()]
    assert lines and lines[-1]["step"] == steps  # throttled, but the final step is always reported
    benchmark.extra_info.update(per_step_us=per_step_us, steps_per_call=steps, measured_at=time.time())


def _source_dir(data):
    from pathlib import Path

    path = Path(data.source)
    return path if path.is_dir() else path.parent
