"""Atomic file writes: a reader sees the old file or the complete new one, never half of one."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from common.errors import MnistBenchError


def current_umask() -> int:
    """The process' umask (read by setting and restoring it: there is no read-only call)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds.

    The file ends up with the mode a plain `open(path, "w")` gives (0o666 less the umask), not
    mkstemp's private 0o600: result folders are meant to be shared.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.fchmod(fd, 0o666 & ~current_umask())
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # Same directory, so os.replace is an atomic rename on POSIX.
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike):
    """Yield a temporary directory that becomes `path` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    tmp.chmod(0o777 & ~current_umask())  # as os.mkdir would make it, not mkdtemp's private 0o700
    try:
        yield tmp
        try:
            os.rename(tmp, target)
        except OSError:
            # Another process finished the same directory first; theirs is as good as ours.
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class UnusableOutputError(MnistBenchError, ValueError):
    """An output location cannot be created or written; the message names it, the reason and the fix."""

    prefix = "--out: "


def prepare_output_directory(path: str | os.PathLike) -> Path:
    """Create `path` if needed and prove it writable, before any work that would write there starts.

    On failure nothing is left behind: folders this call made are removed again.
    """
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise UnusableOutputError(f"{target} is a file, not a folder; choose another location")
    missing = [folder for folder in (target, *target.parents) if not folder.exists()]
    try:
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=target, prefix=".write-probe."):
            pass
    except OSError as error:
        for folder in missing:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()
        reason = error.strerror or type(error).__name__
        raise UnusableOutputError(f"{target}: cannot create or write this folder ({reason}); "
                                  "choose a writable location") from None
    return target
