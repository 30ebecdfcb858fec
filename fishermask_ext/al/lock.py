"""One writer per results folder: two runs into one folder would interleave their rounds.

The lock is the kernel's advisory lock (fcntl.flock) on `<folder>/.lock`, which also holds the
pid of its holder for the error message. The kernel drops a flock when its holder exits or is
killed, so a lock file left behind by a dead run locks nothing: no stale lock to clean up.
"""
import contextlib
import fcntl
import os

__all__ = ["FolderBusy", "LOCK_FILE", "folder_lock", "check_free"]

LOCK_FILE = ".lock"


class FolderBusy(OSError):
    """Another process holds the lock of a results folder."""


def _try_lock(fd, out_dir):
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        raise FolderBusy(f"{out_dir} is being written by another fishermask run (pid {pid}); "
                         f"wait for it to end, or choose another output folder") from None


def check_free(out_dir):
    """Raise FolderBusy when a live process holds the lock of `out_dir`; creates nothing (a
    check before the work that precedes taking the lock)."""
    try:
        fd = os.open(os.path.join(out_dir, LOCK_FILE), os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return
    try:
        _try_lock(fd, out_dir)      # released by the close below
    finally:
        os.close(fd)


@contextlib.contextmanager
def folder_lock(out_dir):
    """Create `out_dir` and hold its lock while the block runs; FolderBusy naming the holder's
    pid when another process holds it."""
    os.makedirs(out_dir, exist_ok=True)
    fd = os.open(os.path.join(out_dir, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _try_lock(fd, out_dir)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)       # drops the lock; the file stays (a later run reuses it)
