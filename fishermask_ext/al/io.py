"""Files of a results folder: every write is atomic, every JSON file is written one way."""
import json

from .._files import write_atomic

__all__ = ["write_atomic", "write_json", "read_json"]


def write_json(path, obj):
    """write_atomic of `obj` as indented JSON."""
    write_atomic(path, json.dumps(obj, indent=1))


def read_json(path):
    """The JSON value stored at `path`."""
    with open(path) as f:
        return json.load(f)
