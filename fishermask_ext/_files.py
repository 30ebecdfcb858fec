"""Atomic file writes shared by every layer (the embedding store's manifest in select, the
results folder of al): one way to replace a file so that a crash never leaves a torn one."""
import os

__all__ = ["write_atomic"]


def write_atomic(path, text):
    """Write `text` to `path` through a temporary file and os.replace (never a torn file: a run
    killed mid-write leaves the previous version, which a resume can continue from). The data
    and then the folder are fsynced, so the new version survives a power cut once this returns."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    # The rename is durable only once the folder's entry is on disk too.
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
