"""A full disk while writing results, plots or the decoded MNIST cache: one line, the old files intact.

The disk is real: a tmpfs of a few KiB that the test mounts (as root, or in a user namespace where the
machine allows one), so every write fails with ENOSPC from the kernel, not from a mocked Python function.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from common.atomic import DiskFullError, write_text_atomic
from common.results import RESULTS_FILE, load_results

SCHEMA_1_RUN = Path(__file__).parent / "data" / "results-schema1.json"


def _mount_tmpfs(path: Path, size_kib: int) -> bool:
    if os.geteuid() != 0:
        return False
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    """A real filesystem of 64 KiB, unmounted afterwards; skipped (with why) where this machine cannot mount one."""
    mount = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    if not _mount_tmpfs(mount, 64):
        pytest.skip("cannot mount a tmpfs here (needs root); the full-disk tests need a real small filesystem")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave_bytes: int) -> None:
    """Fill `disk` until at most `leave_bytes` are free."""
    with open(disk / "filler", "wb") as handle:
        while shutil.disk_usage(disk).free > leave_bytes:
            try:
                handle.write(b"\0" * max(4096, shutil.disk_usage(disk).free - leave_bytes))
                handle.flush()
            except OSError:
                break


def test_a_full_disk_keeps_the_last_complete_results_json(small_disk):
    path = small_disk / RESULTS_FILE
    write_text_atomic(path, '{"complete": true}')
    fill(small_disk, 0)
    with pytest.raises(DiskFullError) as raised:
        write_text_atomic(path, "x" * 200_000)
    message = str(raised.value)
    assert str(path) in message and "200,000 bytes needed" in message and "\n" not in message
    assert path.read_text() == '{"complete": true}'  # the old file, whole
    assert not [p for p in small_disk.iterdir() if p.name.endswith(".tmp")]


def test_compare_onto_a_full_disk_is_one_line_and_leaves_no_partial_file(small_disk, tmp_path):
    saved = tmp_path / "saved"
    saved.mkdir()
    shutil.copy(SCHEMA_1_RUN, saved / RESULTS_FILE)
    out = small_disk / "cmp"
    compare = subprocess.run([sys.executable, "-m", "benchmarks.cli", "compare", str(saved), "--out", str(out)],
                             capture_output=True, text=True, timeout=600)
    assert compare.returncode == 1, compare.stderr[-2000:]
    lines = compare.stderr.strip().splitlines()
    assert len(lines) == 1 and "no space left on its device" in lines[0] and str(out) in lines[0], lines
    assert not [p for p in small_disk.rglob("*") if p.name.endswith(".tmp")]
    assert load_results(saved).job.backends == ("flax", "flax-vmap")  # the input untouched


def test_a_full_disk_under_the_mnist_cache_discards_the_entry(small_disk, mnist_data_dir, monkeypatch, caplog):
    from common import mnist

    # 60,000 decoded images need ~47 MB: far more than the 64 KiB disk holds.
    monkeypatch.setattr(mnist, "user_cache_dir", lambda: small_disk)
    with caplog.at_level(logging.WARNING):
        data = mnist.load_mnist(mnist_data_dir, progress=False)
    assert len(data.train_images) and "could not cache decoded MNIST in " + str(small_disk) in caplog.text
    decoded = small_disk / "decoded"
    assert not decoded.exists() or not any(decoded.iterdir())  # no half-written entry, no temporary left
