"""Atomic file writes shared by every layer (the embedding store's manifest, the
results folder of al, the picks of `fishermask select`): one way to replace a file so that a
crash never leaves a torn one."""
import contextlib
import os

__all__ = ["atomic_path", "write_atomic"]


@contextlib.contextmanager
def atomic_path(path):
    """A temporary path to write `path` through: renamed onto `path` when the block ends
    without an error, removed otherwise (never a torn file: a run killed mid-write leaves the
    previous version, which a resume can continue from)."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_atomic(path, text):
    """Write `text` to `path` through atomic_path. The data and then the folder are fsynced, so
    the new version survives a power cut once this returns."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    # The rename is durable only once the folder's entry is on disk too.
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
