"""An embedding pool X [N, C, D] on disk: one raw row-major file plus a small JSON manifest.

    store = open_store("pool.store", mode="w")             # a new, empty store
    masked_grad_embeddings(model, pool, mask, out=store)   # fills it chunk by chunk
    store = open_store("pool.store")                       # later, anywhere: read it
    rows = store.read_rows(0, 1000)                        # [1000, C, D] on the CPU

A store folder holds `manifest.json` (format, shape, dtype, byte order, chunk_rows, the
completed chunks, fingerprints of what wrote it) and `embeddings.bin` (N·C·D values of the
dtype, row-major). Chunk i is rows [i·chunk_rows, (i+1)·chunk_rows). A writer writes a chunk,
fsyncs it, then rewrites the manifest atomically, so after a crash the manifest lists only
chunks that are on disk, and a resume (mode "a") redoes only the others.

Reads are pread calls into a buffer of the rows asked for, never a mapping of the whole file:
a reader's resident memory is its buffer (the kernel's page cache is not counted in a
process's RSS, and is given back under pressure), and a rank reads only its own rows.
"""
import json
import os

import torch

from .._checks import check_int
from .._files import write_atomic
from .manifest import DTYPES, new_manifest, ranges, read_manifest

__all__ = ["EmbeddingStore", "open_store"]

MANIFEST, DATA = "manifest.json", "embeddings.bin"
MODES = ("r", "w", "a")


def open_store(path, mode="r", *, chunk_rows=None):
    """The EmbeddingStore at `path` (its folder, or the manifest.json inside it).

    mode "r": read; the store must exist and be complete. "w": a new store, filled by
    `masked_grad_embeddings(..., out=store)`; refuses a folder that holds one already. "a":
    continue (resume) the store there, or start a new one where there is none.
    chunk_rows: rows per chunk of a new store (default: the writer's, about 32 MiB of rows); an
    existing store keeps its own and refuses another.
    """
    return EmbeddingStore(path, mode, chunk_rows=chunk_rows)


class EmbeddingStore:
    """An on-disk [N, C, D] float32/float64 embedding pool (see the module docstring).

    The reader protocol selection uses: `shape` (N, C, D), `dtype` (a torch dtype) and
    `read_rows(start, stop, out=None)`. Writers (`masked_grad_embeddings`) use `begin`,
    `chunk_bounds`, `missing` and `write_chunk`.
    """

    _fd = None       # set before anything can raise, so __del__ always finds it

    def __init__(self, path, mode="r", *, chunk_rows=None):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES} ('r' read, 'w' new, 'a' resume), "
                             f"got {mode!r}")
        path = os.fspath(path)
        self.path = os.path.dirname(path) if os.path.basename(path) == MANIFEST else path
        self.mode, self._fd, self._m = mode, None, None
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
        return (f"EmbeddingStore({self.path!r}, shape={self.shape}, dtype={self.dtype}, "
                f"{len(self.completed)}/{self.n_chunks} chunks)")

    def chunk_bounds(self, i):
        """(start, stop) rows of chunk i."""
        i = check_int(i, "chunk", minimum=0, maximum=self.n_chunks - 1)
        return i * self.chunk_rows, min((i + 1) * self.chunk_rows, self.shape[0])

    # -- reading ---------------------------------------------------------------------------
    def read_rows(self, start, stop, out=None):
        """Rows [start, stop) as a CPU tensor [stop - start, C, D] of the store's dtype, read
        with pread into `out` (a contiguous CPU tensor of that shape and dtype) or a new one."""
        self._require_complete()
        N, C, D = self.shape
        start = check_int(start, "start", minimum=0, maximum=N)
        stop = check_int(stop, "stop", minimum=start, maximum=N)
        shape = (stop - start, C, D)
        if out is None:
            out = torch.empty(shape, dtype=self.dtype)
        elif (not torch.is_tensor(out) or tuple(out.shape) != shape or out.dtype != self.dtype
              or out.device.type != "cpu" or not out.is_contiguous()):
            raise ValueError(f"out must be a contiguous CPU {self.dtype} tensor of shape {shape}, "
                             f"got {_describe(out)}")
        buf = _bytes_of(out)
        offset, done = start * self._row_bytes(), 0
        while done < len(buf):     # pread may return fewer bytes than asked; 0 only at EOF
            n = os.preadv(self._fd, [buf[done:]], offset + done)
            if n == 0:
                raise ValueError(f"{self._file(DATA)} ended at byte {offset + done}, inside "
                                 f"rows {start}-{stop}: the file was truncated after opening")
            done += n
        return out

    # -- writing ---------------------------------------------------------------------------
    def begin(self, shape, dtype, fingerprints, chunk_rows=None):
        """Make the store hold `shape` (N, C, D) rows of `dtype` written by `fingerprints`
        ({what: str}): create it if it is new, else refuse unless it holds exactly that.
        chunk_rows: the writer's default for a new store, used unless open_store was given one."""
        if self.mode == "r":
            raise ValueError(f"the store at {self.path} is open for reading; open it with "
                             f"mode='w' (new) or mode='a' (resume) to write it")
        shape = tuple(int(s) for s in shape)
        if dtype not in DTYPES.values():
            raise TypeError(f"an embedding store holds float32 or float64, got {dtype}")
        fingerprints = {str(k): str(v) for k, v in fingerprints.items()}
        if self.defined:
            self._check_same(shape, dtype, fingerprints)
            return self
        chunk_rows = self._chunk_rows or check_int(chunk_rows, "chunk_rows", minimum=1)
        if len(shape) != 3 or min(shape) < 0:
            raise ValueError(f"shape must be (N, C, D) of sizes >= 0, got {shape}")
        os.makedirs(self.path, exist_ok=True)
        # The data file first, sized (sparse) to N·C·D values: its manifest is what makes a
        # store exist, so a crash in between leaves a folder that the next begin overwrites.
        fd = os.open(self._file(DATA), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.ftruncate(fd, shape[0] * shape[1] * shape[2] * dtype.itemsize)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._m = new_manifest(shape, dtype, chunk_rows, fingerprints)
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
        if not torch.is_tensor(rows) or tuple(rows.shape) != shape or rows.dtype != self.dtype:
            raise ValueError(f"chunk {i} must be a {self.dtype} tensor of shape {shape}, "
                             f"got {_describe(rows)}")
        buf = _bytes_of(rows.detach().to("cpu").contiguous())
        offset, done = start * self._row_bytes(), 0
        while done < len(buf):
            done += os.pwrite(self._fd, buf[done:], offset + done)
        os.fsync(self._fd)      # the rows are on disk before the manifest says so
        self._m["completed"] = sorted(self._m["completed"] + [i])
        self._save()

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

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

    def _row_bytes(self):
        _, C, D = self.shape
        return C * D * self.dtype.itemsize

    def _load(self):
        self._m = read_manifest(self._file(MANIFEST))
        self._open_data()

    def _open_data(self):
        self.close()
        path = self._file(DATA)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"the store at {self.path} has a manifest but no {DATA}")
        self._fd = os.open(path, os.O_RDONLY if self.mode == "r" else os.O_RDWR)
        N, C, D = self.shape
        size, want = os.fstat(self._fd).st_size, N * self._row_bytes()
        if size != want:
            self.close()
            raise ValueError(f"{path} holds {size} bytes, but a store of shape {(N, C, D)} "
                             f"{self._m['dtype']} needs N·C·D·itemsize = {want}: the file is "
                             f"truncated or not this store's (copy it again, or re-embed)")

    def _require_complete(self):
        if self.missing:
            m = self.missing
            raise ValueError(
                f"the store at {self.path} is incomplete: chunk(s) {ranges(m)} of "
                f"0-{self.n_chunks - 1} were never written; finish it with `fishermask embed "
                f"... --resume` (masked_grad_embeddings(..., out=open_store(path, mode='a')))")

    def _check_same(self, shape, dtype, fingerprints):
        """Refuse to mix: a store is continued only by what wrote its first chunks."""
        theirs = self.fingerprints
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

    def _save(self):
        write_atomic(self._file(MANIFEST), json.dumps(self._m, indent=1))


def _bytes_of(t):
    """A writable byte view of the memory of a contiguous CPU tensor (no copy)."""
    return memoryview(t.view(-1).view(torch.uint8).numpy())


def _describe(x):
    if torch.is_tensor(x):
        return f"{x.dtype} {tuple(x.shape)} on {x.device}" + \
            ("" if x.is_contiguous() else " (not contiguous)")
    return type(x).__name__

