"""Atomic file writes and claimed folders.

A reader sees the old file or the complete new one, never half of one; a full disk is one line naming the
file and the space it needed, with the old file intact. An output folder is claimed (created and locked)
before anything is written into it, so two processes never write one folder.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import secrets
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

from common.errors import EXIT_FAILED, MnistBenchError

# Inside every claimed folder: flock()ed while a process writes there, and naming that process. The kernel
# drops the lock when its holder dies, however it dies, so a dead process never leaves a folder stuck.
LOCK_FILE = ".mnist-bench.lock"
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# The folders this process holds, by resolved path: released at the end of a command (`release_claims`).
_CLAIMS: dict[Path, int] = {}


class DiskFullError(MnistBenchError, OSError):
    """A write ran out of space (ENOSPC or a quota): the file it was writing is discarded, the old one kept."""

    exit_code = EXIT_FAILED


class FolderInUseError(MnistBenchError, RuntimeError):
    """Another live mnist-bench process holds the output folder."""


def disk_full_error(path: Path, needed_bytes: int | None) -> DiskFullError:
    """The one-line error for a write to `path` that found no space: what it needed and what is free there."""
    try:
        free = f"{shutil.disk_usage(path.parent).free:,} bytes free"
    except OSError:
        free = "free space unknown"
    needed = f"{needed_bytes:,} bytes needed" if needed_bytes is not None else "size unknown"
    return DiskFullError(f"{path}: no space left on its device ({needed}, {free}); the previous version, if any, "
                         "is kept; free some space or write elsewhere (--out)")


def current_umask() -> int:
    """The process' umask (read by setting and restoring it: there is no read-only call)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, size_bytes: int | None = None):
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds.

    The file ends up with the mode a plain `open(path, "w")` gives (0o666 less the umask), not
    mkstemp's private 0o600: result folders are meant to be shared. A full disk raises DiskFullError
    (`size_bytes`, when the caller knows it, is what the message says was needed).
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as error:
        if error.errno in DISK_FULL_ERRNOS:
            raise disk_full_error(target, size_bytes) from None
        raise
    os.fchmod(fd, 0o666 & ~current_umask())
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # Same directory, so os.replace is an atomic rename on POSIX.
        os.replace(tmp, target)
    except OSError as error:
        if error.errno in DISK_FULL_ERRNOS:
            raise disk_full_error(target, size_bytes) from None
        raise
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` atomically (flushed to the disk before the rename, so a full disk is caught)."""
    data = text.encode("utf-8")
    with atomic_path(path, len(data)) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())


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


def claim_output_directory(path: str | os.PathLike) -> Path:
    """Create `path` if needed, prove it writable and lock it for this process, before any work writes there.

    The lock (flock on LOCK_FILE) is exclusive: of two processes claiming one folder, exactly one gets it, and
    the other gets FolderInUseError naming the holder. It lasts until `release_claims` or this process' end;
    claiming a folder this process holds already is a no-op.
    """
    target = prepare_output_directory(path)
    key = target.resolve()
    if key in _CLAIMS:
        return target
    fd = os.open(target / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666 & ~current_umask())
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _lock_holder(fd)
        os.close(fd)
        raise FolderInUseError(f"{target} is in use by another mnist-bench process ({holder}); wait for it to "
                               "end, or choose another folder") from None
    with contextlib.suppress(OSError):  # who holds it is for messages only; a full disk must not stop the claim
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "argv": sys.argv,
                                  "since": datetime.datetime.now(datetime.timezone.utc).isoformat(
                                      timespec="seconds")}).encode(), 0)
    _CLAIMS[key] = fd
    return target


def _lock_holder(fd: int) -> str:
    # The holder writes its name just after it locks: a claim that lost by microseconds may read too early.
    for _ in range(50):
        try:
            holder = json.loads(os.pread(fd, 65536, 0) or b"{}")
            return f"pid {holder['pid']} on {holder['host']}, since {holder['since']}"
        except (OSError, ValueError, KeyError, TypeError):
            time.sleep(0.02)
    return "holder unknown"


def release_claims() -> None:
    """Unlock every folder this process claimed (their lock files stay: deleting one would race a new claim)."""
    while _CLAIMS:
        _, fd = _CLAIMS.popitem()
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def new_output_directory(prefix: str = "", root: str | os.PathLike = "runs") -> Path:
    """A new folder runs/<prefix><UTC time>-<random>, created here (never one another process made): names sort
    by time, and two processes starting in the same second still get two folders."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    prepare_output_directory(root)
    while True:
        candidate = Path(root) / f"{prefix}{stamp}-{secrets.token_hex(3)}"
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
