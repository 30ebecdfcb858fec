"""What selection reads, behind one small row interface: the dense layout (an [N, C, D] torch
tensor, a numpy array, or a dense embedding store) and the factored one (FactoredEmbeddings, or
a factored store). Nothing above this module knows which one it holds.

The interface (docs/ALGORITHM.md, "Factored embeddings"): `shape`, `dtype`, `device`;
`chunks()` of rows; `gram_sums(masks)`, the Fisher sums Σ X_iᵀX_i; `check_finite(name)`;
`to_working`/`from_working`, a [D, D] matrix between the caller's column order and the one the
loop works in; `blocks(candidates)` and `kernels(backend)` for ops.loop (the initial A/B, the
per-step W/Z product with its update and scores, a row read); `native_tensor`, set when the
whole greedy loop can run natively in one call; `give_back`, results in the caller's kind.
"""
import numpy as np
import torch

from ..ops import resolve
from ..ops.loop import Block, Kernels
from ..ops.sizes import BLOCK, chunk_rows, factored_init_rows, factored_rows
from ..store.factored import FactoredEmbeddings, from_natural, to_natural

__all__ = ["Rows", "FactoredRows", "RowRange", "as_rows"]


class RowRange:
    """Rows [start, stop) of an embedding store (any object with shape, dtype, read_rows), as a
    store of its own: reads never leave the range (a rank reads only its shard)."""

    def __init__(self, source, start, stop):
        N = source.shape[0]
        if not 0 <= start <= stop <= N:
            raise ValueError(f"row range [{start}, {stop}) is outside the {N} rows")
        self.source, self.start, self.stop = source, start, stop
        self.shape = (stop - start, *source.shape[1:])
        self.dtype = source.dtype
        self.factored = getattr(source, "factored", False)
        if self.factored:                         # a factored store's layout
            self.d_bar, self.d_rest, self.columns = source.d_bar, source.d_rest, source.columns

    def read_rows(self, start, stop):
        if not 0 <= start <= stop <= self.shape[0]:
            raise ValueError(f"rows [{start}, {stop}) are outside this range of "
                             f"{self.shape[0]} rows")
        return self.source.read_rows(self.start + start, self.start + stop)


class Rows:
    """The dense layout: an [N, C, D] pool. `tensor` is set when it is in memory (a torch
    tensor, or a numpy array viewed without a copy); otherwise `source.read_rows(start, stop)`
    reads a range of rows (an embedding store: only one chunk is resident at a time)."""

    factored = False

    def __init__(self, tensor=None, source=None, kind="torch"):
        self.tensor, self.source, self.kind = tensor, source, kind
        held = tensor if tensor is not None else source
        self.shape = tuple(held.shape)
        self.dtype = held.dtype
        self.device = tensor.device if tensor is not None else torch.device("cpu")

    @property
    def native_tensor(self):
        """The in-memory tensor the native greedy loop (one op call) can run on, or None."""
        return self.tensor

    def read(self, start, stop):
        if self.tensor is not None:
            return self.tensor[start:stop]
        return self.source.read_rows(start, stop)

    def chunk_rows(self):
        """Rows per chunk: about ops.sizes.CHUNK_BYTES of float64 working copy."""
        N, C, D = self.shape
        return chunk_rows(C, D)

    def chunks(self):
        """(start, rows) for consecutive chunks of chunk_rows() rows."""
        N, rows = self.shape[0], self.chunk_rows()
        for s in range(0, N, rows):
            yield s, self.read(s, min(N, s + rows))

    # -- Fisher sums and checks ----------------------------------------------------------------
    def gram_sums(self, masks):
        """Σ X_iᵀX_i over the rows each mask selects ([N] bool, or None: every row), [D, D]
        float64 each in the working column order, in one pass over the rows."""
        D = self.shape[2]
        sums = [torch.zeros(D, D, dtype=torch.float64, device=self.device) for _ in masks]
        for s, X in self.chunks():
            for out, m in zip(sums, masks):
                Xc = X if m is None else X[m[s:s + len(X)]]     # a chunk-sized gather at most
                _add_gram(out, Xc.reshape(-1, D).to(torch.float64))
        return [out.tril() + out.tril(-1).T for out in sums]

    def check_finite(self, name):
        """ValueError naming the first rows with NaN or Inf."""
        for s, X in self.chunks():                  # chunked: no N·C·D-sized temporary
            _raise_on_bad_rows(name, torch.isfinite(X).flatten(1).all(1), s)

    def max_abs(self):
        return max((float(X.abs().max()) for _, X in self.chunks() if X.numel()), default=0.0)

    def to_working(self, F):
        return F

    def from_working(self, F):
        return F

    # -- the greedy loop -----------------------------------------------------------------------
    def blocks(self, candidates=None):
        """The ops.loop blocks: the whole tensor when in memory, else one block per chunk, each
        read again whenever the loop scores it (so only one is resident)."""
        N = self.shape[0]
        if self.tensor is not None:
            return [Block(lambda: self.tensor, 0, N, candidates)]
        rows = self.chunk_rows()
        return [Block(lambda s=s, e=min(N, s + rows): self.read(s, e), s, min(N, s + rows) - s,
                      None if candidates is None else candidates[s:s + rows])
                for s in range(0, N, rows)]

    def kernels(self, backend):
        """The step kernels of ops.loop for this layout, native or twins (`backend`)."""
        dev, chunk = self.device, self.chunk_rows()
        init, step = (resolve(n, dev, backend) for n in ("trace_ratio_init", "trace_ratio_step"))
        return Kernels(init=lambda X, P0, F, scale: init(X, P0, F, scale, chunk, BLOCK),
                       step=step, row=lambda X, j: X[j].to(torch.float64),
                       commit=resolve("commit_direction", dev, backend))

    def give_back(self, *tensors):
        """The results in the caller's kind: numpy arrays for a numpy input, else tensors."""
        if self.kind == "numpy":
            return tuple(t.cpu().numpy() for t in tensors)
        return tensors


class FactoredRows(Rows):
    """The factored layout: X_i = [G_i ⊗ h̄_iᵀ | R_i] held as its factors (FactoredEmbeddings
    in memory, or a factored store read chunk by chunk). It works in the natural column
    order; matrices given in the dense order are permuted on the way in and out."""

    factored = True

    def __init__(self, tensor=None, source=None, kind="torch"):
        super().__init__(tensor, source, kind)
        held = tensor if tensor is not None else source
        self.columns = getattr(held, "columns", None)
        self.d_bar, self.d_rest = held.d_bar, held.d_rest

    @property
    def native_tensor(self):
        return None            # the native one-call loop takes a dense X

    def chunk_rows(self):
        return factored_rows(self.shape[1], self.d_bar, self.d_rest)

    def gram_sums(self, masks):
        D = self.shape[2]
        sums = [torch.zeros(D, D, dtype=torch.float64, device=self.device) for _ in masks]
        gram = resolve("factored_gram", self.device, "auto")
        for s, X in self.chunks():
            for out, m in zip(sums, masks):
                Xc = X if m is None else X[m[s:s + len(X)]]
                out += gram(Xc.G, Xc.H, Xc.R)
        # Exactly symmetric (the loop relies on it), as the dense sums are by construction.
        return [out.triu() + out.triu(1).T for out in sums]

    def check_finite(self, name):
        for s, X in self.chunks():
            for factor, t in X.factors:
                _raise_on_bad_rows(f"{name} (factor {factor})",
                                   torch.isfinite(t).reshape(len(t), -1).all(1), s)

    def max_abs(self):
        return max((float(t.abs().max()) for _, X in self.chunks() for _, t in X.factors
                    if t.numel()), default=0.0)

    def to_working(self, F):
        return to_natural(F, self.columns)

    def from_working(self, F):
        return from_natural(F, self.columns)

    def kernels(self, backend):
        dev = self.device
        init_chunk = factored_init_rows(self.shape[1], self.d_bar, self.d_rest)
        init, step = (resolve(n, dev, backend) for n in ("factored_init", "factored_step"))
        return Kernels(
            init=lambda X, P0, F, scale: init(X.G, X.H, X.R, P0, F, scale, init_chunk),
            step=lambda A, B, X, *rest: step(A, B, X.G, X.H, X.R, *rest),
            row=lambda X, j: X[j].natural(torch.float64)[0],
            commit=resolve("commit_direction", dev, backend))


def _raise_on_bad_rows(name, finite, start):
    """ValueError naming the first rows (offset by `start`) where `finite` [n] is False."""
    if not bool(finite.all()):
        bad = ((~finite).nonzero().flatten()[:5] + start).tolist()
        raise ValueError(f"{name} contains NaN or Inf (first bad rows: {bad}); "
                         f"recompute or drop those embeddings")


def _add_gram(out, X2):
    """out += lower block triangle of X2ᵀX2 (a blocked SYRK: the upper blocks are skipped)."""
    D = X2.shape[1]
    for j in range(0, D, BLOCK):
        out[j:, j:j + BLOCK] += X2[:, j:].T @ X2[:, j:j + BLOCK]


def as_rows(x, name):
    """The layout over `x`; TypeError naming `name` for anything else."""
    if isinstance(x, FactoredEmbeddings):
        return FactoredRows(tensor=x)
    if isinstance(x, torch.Tensor):
        return Rows(tensor=x)
    if isinstance(x, np.ndarray):
        if x.dtype not in (np.float32, np.float64):
            raise TypeError(f"{name} must be a float32 or float64 array, got {x.dtype}; "
                            f"convert with .astype(np.float32)")
        # No copy: torch shares the array's memory (a np.memmap stays on disk).
        return Rows(tensor=torch.from_numpy(np.ascontiguousarray(x)), kind="numpy")
    if all(hasattr(x, a) for a in ("read_rows", "shape", "dtype")):
        return (FactoredRows if getattr(x, "factored", False) else Rows)(source=x, kind="store")
    raise TypeError(f"{name} must be a torch.Tensor or numpy array [N, C, D], "
                    f"FactoredEmbeddings, or an embedding store (fishermask_ext.open_store), "
                    f"got {type(x).__name__}")
