"""An embedding pool X [N, C, D] on disk: one raw row-major file plus a small JSON manifest.

    store = open_store("pool.store", mode="w")             # a new, empty store
    masked_grad_embeddings(model, pool, mask, out=store)   # fills it chunk by chunk
    store = open_store("pool.store")                       # later, anywhere: read it
    rows = store.read_rows(0, 1000)                        # [1000, C, D] on the CPU

A store folder holds `manifest.json` (format, shape, dtype, byte order, chunk_rows, the
completed chunks, fingerprints of what wrote it, the layout) and its data: a dense store
`embeddings.bin` (N·C·D values of the dtype, row-major), a factored one (FactoredEmbeddings) its
factors `G.bin`, `H.bin` and `R.bin` (manifest.parts), read back as FactoredEmbeddings. Chunk i is rows [i·chunk_rows, (i+1)·chunk_rows). A writer writes a chunk,
fsyncs it, then rewrites the manifest atomically, so after a crash the manifest lists only
chunks that are on disk, and a resume (mode "a") redoes only the others.

Reads are pread calls into a buffer of the rows asked for, never a mapping of the whole file:
a reader's resident memory is its buffer (the kernel's page cache is not counted in a
process's RSS, and is given back under pressure), and a rank reads only its own rows.
"""
import json
import os

import torch

from .._checks import check_choice, check_int
from .._files import write_atomic
from .factored import FactoredEmbeddings
from .manifest import DTYPES, parts, ranges, read_manifest
from .io import describe, read_into, numel
from .writer import StoreWriter

__all__ = ["EmbeddingStore", "open_store"]

MANIFEST = "manifest.json"
MODES = ("r", "w", "a")


def open_store(path, mode="r", *, chunk_rows=None, factored=None):
    """The EmbeddingStore at `path` (its folder, or the manifest.json inside it).

    mode "r": read; the store must exist and be complete. "w": a new store, filled by
    `masked_grad_embeddings(..., out=store)`; refuses a folder that holds one already. "a":
    continue (resume) the store there, or start a new one where there is none.
    chunk_rows: rows per chunk of a new store (default: the writer's, about 32 MiB of rows); an
    existing store keeps its own and refuses another.
    factored: True or False to require a factored (or dense) store when reading; None: either.
    """
    store = EmbeddingStore(path, mode, chunk_rows=chunk_rows)
    if factored is not None and store.defined and store.factored != bool(factored):
        have, want = ("factored", "dense") if store.factored else ("dense", "factored")
        raise ValueError(f"the store at {store.path} holds {have} embeddings, not {want}; "
                         f"open it with factored={store.factored}, or re-embed it")
    return store


class EmbeddingStore(StoreWriter):
    """An on-disk [N, C, D] float32/float64 embedding pool (see the module docstring).

    The reader protocol selection uses: `shape` (N, C, D), `dtype` (a torch dtype),
    `factored` (and then `d_bar`, `d_rest`, `columns`) and `read_rows(start, stop, out=None)`.
    Writers (`masked_grad_embeddings`) use `begin`, `chunk_bounds`, `missing` and
    `write_chunk`.
    """

    _fds = {}        # set before anything can raise, so __del__ always finds it

    def __init__(self, path, mode="r", *, chunk_rows=None):
        check_choice(mode, "mode", MODES)     # 'r' read, 'w' new, 'a' resume
        path = os.fspath(path)
        self.path = os.path.dirname(path) if os.path.basename(path) == MANIFEST else path
        self.mode, self._fds, self._m = mode, {}, None
        exists = os.path.isfile(self._file(MANIFEST))
        if mode == "r" and not exists:
            raise FileNotFoundError(
                f"no embedding store at {self.path} (no {MANIFEST}); write one with `fishermask "
                f"embed` or masked_grad_embeddings(..., out=open_store(path, mode='w'))")
        if mode == "w" and exists:
            raise FileExistsError(
                f"{self.path} already holds an embedding store; open it with mode='a' "
                f"(`fishermask embed --resume`) to continue it, or delete it")
        self._chunk_rows = None if chunk_rows is None else check_int(chunk_rows, "chunk_rows",
                                                                     minimum=1)
        if exists:
            self._load()
            if self._chunk_rows not in (None, self.chunk_rows):
                raise ValueError(f"the store at {self.path} has chunk_rows={self.chunk_rows}; "
                                 f"open it without chunk_rows (or with that value)")
        if mode == "r":
            self._require_complete()

    # -- what it holds ---------------------------------------------------------------------
    @property
    def defined(self):
        """True once the store has a shape (a new store gets one from its first `begin`)."""
        return self._m is not None

    @property
    def shape(self):
        """(N, C, D)."""
        return tuple(self._manifest()["shape"])

    @property
    def dtype(self):
        """torch.float32 or torch.float64."""
        return DTYPES[self._manifest()["dtype"]]

    @property
    def factored(self):
        """True when the store holds FactoredEmbeddings (read_rows returns them)."""
        return self._layout()["kind"] == "factored"

    @property
    def d_bar(self):
        return self._layout()["d_bar"]

    @property
    def d_rest(self):
        return self._layout()["d_rest"]

    @property
    def columns(self):
        cols = self._layout()["columns"]
        return None if cols is None else torch.tensor(cols, dtype=torch.long)

    @property
    def chunk_rows(self):
        return self._manifest()["chunk_rows"]

    @property
    def fingerprints(self):
        """{what: fingerprint} of what wrote the rows (model, mask, weighting)."""
        return dict(self._manifest()["fingerprints"])

    @property
    def n_chunks(self):
        return -(-self.shape[0] // self.chunk_rows)

    @property
    def completed(self):
        """Sorted indices of the chunks on disk."""
        return tuple(self._manifest()["completed"])

    @property
    def missing(self):
        """Sorted indices of the chunks not yet written."""
        done = set(self.completed)
        return tuple(i for i in range(self.n_chunks) if i not in done)

    @property
    def complete(self):
        return not self.missing

    def __len__(self):
        return self.shape[0]

    def __repr__(self):
        if not self.defined:
            return f"EmbeddingStore({self.path!r}, empty)"
        return (f"EmbeddingStore({self.path!r}, {'factored' if self.factored else 'dense'}, "
                f"shape={self.shape}, dtype={self.dtype}, "
                f"{len(self.completed)}/{self.n_chunks} chunks)")

    def chunk_bounds(self, i):
        """(start, stop) rows of chunk i."""
        i = check_int(i, "chunk", minimum=0, maximum=self.n_chunks - 1)
        return i * self.chunk_rows, min((i + 1) * self.chunk_rows, self.shape[0])

    # -- reading ---------------------------------------------------------------------------
    def read_rows(self, start, stop, out=None):
        """Rows [start, stop) as a CPU tensor [stop - start, C, D] of the store's dtype (a
        factored store: FactoredEmbeddings), read with pread into `out` (a contiguous CPU
        tensor of that shape and dtype; dense stores only) or a new one."""
        self._require_complete()
        N, C, D = self.shape
        start = check_int(start, "start", minimum=0, maximum=N)
        stop = check_int(stop, "stop", minimum=start, maximum=N)
        shape = (stop - start, C, D)
        if out is not None and (self.factored or not torch.is_tensor(out)
                                or tuple(out.shape) != shape or out.dtype != self.dtype
                                or out.device.type != "cpu" or not out.is_contiguous()):
            raise ValueError(f"out must be a contiguous CPU {self.dtype} tensor of shape {shape}"
                             f"{' (dense stores only)' if self.factored else ''}, got "
                             f"{describe(out)}")
        got = []
        for name, row in parts(self._m):
            buf = out if out is not None else torch.empty((stop - start, *row), dtype=self.dtype)
            got.append(read_into(self._fds[name], buf, start * self._row_bytes(row),
                                 self._file(name), f"rows {start}-{stop}"))
        if not self.factored:
            return got[0]
        return FactoredEmbeddings(got[0], got[1], got[2] if len(got) > 2 else None,
                                  columns=self.columns)

    def close(self):
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        self.close()

    def __reduce__(self):      # a store sent to another process reopens the same folder
        return EmbeddingStore, (self.path, "r" if self.mode == "r" else "a")

    # -- internals -------------------------------------------------------------------------
    def _file(self, name):
        return os.path.join(self.path, name)

    def _manifest(self):
        if self._m is None:
            raise ValueError(f"the store at {self.path} is empty; fill it with "
                             f"masked_grad_embeddings(..., out=store) first")
        return self._m

    def _layout(self):
        return self._manifest().get("layout", dict(kind="dense"))

    def _row_bytes(self, row):
        return numel(row) * self.dtype.itemsize

    def _load(self):
        self._m = read_manifest(self._file(MANIFEST))
        self._open_data()

    def _open_data(self):
        self.close()
        N = self.shape[0]
        for name, row in parts(self._m):
            path = self._file(name)
            if not os.path.isfile(path):
                self.close()
                raise FileNotFoundError(f"the store at {self.path} has a manifest but no {name}")
            self._fds[name] = fd = os.open(path, os.O_RDONLY if self.mode == "r" else os.O_RDWR)
            size, want = os.fstat(fd).st_size, N * self._row_bytes(row)
            if size != want:
                self.close()
                raise ValueError(f"{path} holds {size} bytes, but a store of shape "
                                 f"{self.shape} {self._m['dtype']} needs N·{list(row)}·itemsize "
                                 f"= {want} there: the file is truncated or not this store's "
                                 f"(copy it again, or re-embed)")

    def _require_complete(self):
        if self.missing:
            m = self.missing
            raise ValueError(
                f"the store at {self.path} is incomplete: chunk(s) {ranges(m)} of "
                f"0-{self.n_chunks - 1} were never written; finish it with `fishermask embed "
                f"... --resume` (masked_grad_embeddings(..., out=open_store(path, mode='a')))")

    def _save(self):
        write_atomic(self._file(MANIFEST), json.dumps(self._m, indent=1))
