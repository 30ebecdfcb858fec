"""The manifest of an embedding store (store.py): its format, what it records, how it is read
back (every field checked, so a damaged or foreign file is named, not half-used)."""
import json
import sys

import torch

__all__ = ["FORMAT", "DTYPES", "new_manifest", "read_manifest", "parts", "ranges"]

FORMAT = "fishermask_ext.EmbeddingStore/1"
DTYPES = {"float32": torch.float32, "float64": torch.float64}
_NAMES = {v: k for k, v in DTYPES.items()}
_KEYS = ("shape", "dtype", "byte_order", "chunk_rows", "fingerprints", "completed")


def new_manifest(shape, dtype, chunk_rows, fingerprints, factored=None):
    """The manifest of a new store: nothing completed yet. `factored`: None for a dense store,
    else dict(d_bar, d_rest, columns) of its FactoredEmbeddings layout."""
    layout = dict(kind="dense") if factored is None else dict(kind="factored", **factored)
    return dict(format=FORMAT, shape=list(shape), dtype=_NAMES[dtype], byte_order=sys.byteorder,
                chunk_rows=chunk_rows, fingerprints=fingerprints, completed=[], layout=layout)


def parts(manifest):
    """[(file name, per-row shape)] of the store's data files. A dense store: one file of
    [C, D] rows. A factored one: G [C, C], H [d̄] and, when D_r > 0, R [C, D_r] (its rows on
    disk are those of the factors: a float32 store stays 9.7× smaller for FisherMask's mask)."""
    _, C, D = manifest["shape"]
    layout = manifest.get("layout", dict(kind="dense"))    # stores written before layouts
    if layout["kind"] == "dense":
        return [("embeddings.bin", (C, D))]
    found = [("G.bin", (C, C)), ("H.bin", (layout["d_bar"],))]
    return found + ([("R.bin", (C, layout["d_rest"]))] if layout["d_rest"] else [])


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
    layout = m.get("layout", dict(kind="dense"))
    if layout.get("kind") not in ("dense", "factored") or (
            layout["kind"] == "factored" and any(k not in layout for k in
                                                 ("d_bar", "d_rest", "columns"))):
        raise ValueError(f"{path}: unknown store layout {layout!r} (dense or factored)")
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
