"""Files of a results folder: every write is atomic, every JSON file is written one way."""
import json
import os

__all__ = ["write_atomic", "write_json", "read_json"]


def write_atomic(path, text):
    """Write `text` to `path` through a temporary file and os.replace (never a torn file: a run
    killed mid-write leaves the previous round's file, which --resume can continue from)."""
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


def write_json(path, obj):
    """write_atomic of `obj` as indented JSON."""
    write_atomic(path, json.dumps(obj, indent=1))


def read_json(path):
    """The JSON value stored at `path`."""
    with open(path) as f:
        return json.load(f)
