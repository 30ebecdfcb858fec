"""Files of a results folder: every write is atomic, every JSON file is written one way."""
import contextlib
import json
import os

__all__ = ["atomic_path", "write_atomic", "write_json", "read_json"]


@contextlib.contextmanager
def atomic_path(path):
    """A temporary path to write `path` through: renamed onto `path` when the block ends
    without an error, removed otherwise (never a torn file: a run killed mid-write leaves the
    previous round's file, which --resume can continue from)."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_atomic(path, text):
    """Write `text` to `path` through atomic_path, flushed to disk before the rename."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def write_json(path, obj):
    """write_atomic of `obj` as indented JSON."""
    write_atomic(path, json.dumps(obj, indent=1))


def read_json(path):
    """The JSON value stored at `path`; a ValueError naming the file when it is not JSON (a
    file cut off by a full disk or a kill, or edited by hand)."""
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON ({exc}): it was cut off or edited; "
                             f"restore it, or delete it to start that part again") from None
