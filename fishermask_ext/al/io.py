"""Files of a results folder: every write is atomic, every JSON file is written one way."""
import json

from .._files import atomic_path, write_atomic

__all__ = ["atomic_path", "write_atomic", "write_json", "read_json"]


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
