"""The manifest of an embedding store (store.py): its format, what it records, how it is read
back (every field checked, so a damaged or foreign file is named, not half-used)."""
import json
import sys

import torch

__all__ = ["FORMAT", "DTYPES", "new_manifest", "read_manifest", "ranges"]

FORMAT = "fishermask_ext.EmbeddingStore/1"
DTYPES = {"float32": torch.float32, "float64": torch.float64}
_NAMES = {v: k for k, v in DTYPES.items()}
_KEYS = ("shape", "dtype", "byte_order", "chunk_rows", "fingerprints", "completed")


def new_manifest(shape, dtype, chunk_rows, fingerprints):
    """The manifest of a new store: nothing completed yet."""
    return dict(format=FORMAT, shape=list(shape), dtype=_NAMES[dtype], byte_order=sys.byteorder,
                chunk_rows=chunk_rows, fingerprints=fingerprints, completed=[])


def read_manifest(path):
    """The manifest at `path`, checked: ValueError naming the file when it is not one this
    reader can use."""
    try:
        with open(path) as f:
            m = json.load(f)
    except ValueError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT or any(k not in m for k in _KEYS):
        raise ValueError(f"{path} is not an embedding store manifest (format {FORMAT})")
    if m["dtype"] not in DTYPES or m["byte_order"] != sys.byteorder:
        raise ValueError(f"{path}: the store holds {m['byte_order']}-endian {m['dtype']}; this "
                         f"reader takes {sys.byteorder}-endian {' or '.join(DTYPES)}")
    return m


def ranges(indices):
    """(1, 2, 3, 7) -> '1-3, 7': chunk lists as an error message shows them."""
    parts, run = [], [indices[0]]
    for i in indices[1:]:
        if i != run[-1] + 1:
            parts.append(run)
            run = []
        run.append(i)
    parts.append(run)
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else f"{r[0]}" for r in parts)
