"""Atomic writes: complete or absent, never half-written, and as readable as a plain open() makes them."""

from __future__ import annotations

import os
import stat

import pytest

from common.atomic import atomic_directory, atomic_path, write_text_atomic


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_files_get_the_mode_of_a_plain_open(tmp_path, umask_022):
    with open(tmp_path / "plain.txt", "w") as handle:
        handle.write("x")
    write_text_atomic(tmp_path / "atomic.txt", "x")
    assert mode(tmp_path / "atomic.txt") == mode(tmp_path / "plain.txt") == 0o644


def test_atomic_mode_follows_the_umask(tmp_path):
    previous = os.umask(0o077)
    try:
        write_text_atomic(tmp_path / "private.txt", "x")
    finally:
        os.umask(previous)
    assert mode(tmp_path / "private.txt") == 0o600


def test_atomic_directory_gets_the_mode_of_mkdir(tmp_path, umask_022):
    with atomic_directory(tmp_path / "entry") as tmp:
        (tmp / "a").write_text("x")
    assert mode(tmp_path / "entry") == 0o755


def test_failed_block_leaves_nothing(tmp_path):
    write_text_atomic(tmp_path / "kept.txt", "old")
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "kept.txt") as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert (tmp_path / "kept.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.txt"]
