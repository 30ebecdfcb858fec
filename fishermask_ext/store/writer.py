"""The writer half of EmbeddingStore (store.py): `begin` makes a store hold a shape, dtype and
layout (or refuses to mix with what it holds), `write_chunk` puts one chunk on disk durably.
`chunk_bounds` and `missing` (store.py) complete the protocol masked_grad_embeddings uses."""
import os

import torch

from .._checks import check_int
from .factored import FactoredEmbeddings
from .manifest import DTYPES, new_manifest, parts
from .io import describe, numel, write_from

__all__ = ["StoreWriter"]


class StoreWriter:
    """Mixed into EmbeddingStore: its state (_m, _fds, path, mode) and helpers are there."""

    def begin(self, shape, dtype, fingerprints, chunk_rows=None, factored=None):
        """Make the store hold `shape` (N, C, D) rows of `dtype` written by `fingerprints`
        ({what: str}): create it if it is new, else refuse unless it holds exactly that.
        chunk_rows: the writer's default for a new store, used unless open_store was given one.
        factored: None for dense rows, else dict(d_bar, d_rest, columns) of the
        FactoredEmbeddings written (columns a list, or None for the natural order)."""
        if self.mode == "r":
            raise ValueError(f"the store at {self.path} is open for reading; open it with "
                             f"mode='w' (new) or mode='a' (resume) to write it")
        shape = tuple(int(s) for s in shape)
        if dtype not in DTYPES.values():
            raise TypeError(f"an embedding store holds float32 or float64, got {dtype}")
        fingerprints = {str(k): str(v) for k, v in fingerprints.items()}
        if factored is not None:
            factored = dict(d_bar=int(factored["d_bar"]), d_rest=int(factored["d_rest"]),
                            columns=None if factored.get("columns") is None
                            else [int(c) for c in factored["columns"]])
        if self.defined:
            self._check_same(shape, dtype, fingerprints, factored)
            return self
        chunk_rows = self._chunk_rows or check_int(chunk_rows, "chunk_rows", minimum=1)
        if len(shape) != 3 or min(shape) < 0:
            raise ValueError(f"shape must be (N, C, D) of sizes >= 0, got {shape}")
        os.makedirs(self.path, exist_ok=True)
        manifest = new_manifest(shape, dtype, chunk_rows, fingerprints, factored)
        # The data files first, sized (sparse) to their N rows: the manifest is what makes a
        # store exist, so a crash in between leaves a folder that the next begin overwrites.
        for name, row in parts(manifest):
            fd = os.open(self._file(name), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.ftruncate(fd, shape[0] * numel(row) * dtype.itemsize)
                os.fsync(fd)
            finally:
                os.close(fd)
        self._m = manifest
        self._save()
        self._open_data()
        return self

    def write_chunk(self, i, rows):
        """Write chunk i (rows [chunk_rows, C, D], fewer for the last), fsync it, then record
        it in the manifest: once this returns, the chunk survives any crash."""
        start, stop = self.chunk_bounds(i)
        if self.mode == "r":
            raise ValueError(f"the store at {self.path} is open for reading")
        if i in self._m["completed"]:
            raise ValueError(f"chunk {i} of {self.path} is already written; a store's chunks "
                             f"are written once")
        shape = (stop - start, *self.shape[1:])
        kind = FactoredEmbeddings if self.factored else torch.Tensor
        if (not isinstance(rows, kind) or tuple(rows.shape) != shape or rows.dtype != self.dtype
                or (self.factored and (rows.d_bar, rows.d_rest) != (self.d_bar, self.d_rest))):
            what = "FactoredEmbeddings" if self.factored else "tensor"
            raise ValueError(f"chunk {i} must be a {self.dtype} {what} of shape {shape}"
                             + (f" with d̄ = {self.d_bar}, D_r = {self.d_rest}" if self.factored
                                else "") + f", got {describe(rows)}")
        tensors = [t for _, t in rows.factors] if self.factored else [rows]
        for (name, row), t in zip(parts(self._m), tensors):
            write_from(self._fds[name], t, start * self._row_bytes(row))
            os.fsync(self._fds[name])      # the rows are on disk before the manifest says so
        self._m["completed"] = sorted(self._m["completed"] + [i])
        self._save()

    def _check_same(self, shape, dtype, fingerprints, factored):
        """Refuse to mix: a store is continued only by what wrote its first chunks."""
        theirs = self.fingerprints
        if self.factored != (factored is not None):
            have, want = ("factored", "dense") if self.factored else ("dense", "factored")
            raise ValueError(f"refuse to mix: the store at {self.path} holds {have} embeddings, "
                             f"this run makes {want} ones; write into a new store, or delete "
                             f"this one")
        if self.factored and {k: v for k, v in self._layout().items() if k != "kind"} != factored:
            raise ValueError(f"refuse to mix: the store at {self.path} holds factored "
                             f"embeddings of another layout ({self._layout()} there, "
                             f"{factored} here); write into a new store, or delete this one")
        if self.shape != shape or self.dtype != dtype:
            raise ValueError(f"refuse to mix: the store at {self.path} holds {self.dtype} rows "
                             f"of shape {self.shape}, this run makes {dtype} {shape}; write "
                             f"into a new store, or delete this one")
        for key in sorted(set(theirs) | set(fingerprints)):
            if theirs.get(key) != fingerprints.get(key):
                raise ValueError(f"refuse to mix: the store at {self.path} was written with "
                                 f"another {key} ({theirs.get(key)!r} there, "
                                 f"{fingerprints.get(key)!r} here); write into a new store, or "
                                 f"delete this one")
