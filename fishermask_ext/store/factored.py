"""FactoredEmbeddings: an [N, C, D] embedding pool whose classifier block is kept as G ⊗ h̄.

The gradient of log p_c with respect to a Linear classifier's weight W [C, d] is an outer
product, ∂ log p_c / ∂W[k, m] = (δ_ck − p_k)·h_m (h: the classifier's input), so every
candidate's embedding is exactly

    X_i = [ G_i ⊗ h̄_iᵀ | R_i ]      G_i[c, k] = w_c·(δ_ck − p_k)   (C×C; w_c = sqrt(p_c) or 1)
                                     h̄_i = [h_i; 1] when the bias is masked, else h_i   (d̄)
                                     R_i = the other masked columns (C×D_r)

with D = C·d̄ + D_r: row c of the classifier block is G_i[c, :] ⊗ h̄_i, i.e. column k·d̄ + m
holds G_i[c, k]·h̄_i[m] (class k major, input m minor), then R's D_r columns. That is the
"natural" column order, the one selection works in. The order masked_grad_embeddings gives a
dense X (the mask's: parameters in model order, the classifier's weight and bias apart) can
differ; `columns` maps natural column j to its dense position, so `dense()` equals what the
dense path computes, column for column. Nothing is approximated: it is the same matrix in
N·(C² + d̄ + C·D_r) numbers instead of N·C·D (9.7× fewer for FisherMask's mask of the narrow
ResNet-18, 84× for BAIT's on a 512-wide penultimate layer; docs/ALGORITHM.md, "Factored
embeddings").
"""
import numbers

import torch

__all__ = ["FactoredEmbeddings"]

_FLOATS = (torch.float32, torch.float64)


class FactoredEmbeddings:
    """An [N, C, D] pool of embeddings X_i = [G_i ⊗ h̄_iᵀ | R_i] (see the module docstring).

    Args:
        G: [N, C, C] float32/float64, the classifier factor of each candidate.
        H: [N, d̄] of the same dtype and device, h̄_i (with a trailing 1 when the bias is masked).
        R: [N, C, D_r] of the same dtype and device, or None (D_r = 0: the mask is the
            classifier only, as BAIT's).
        columns: [D] int64, the dense position of each natural column (classifier block k-major,
            then R), or None for the natural order itself.

    Behaves like a read-only [N, C, D] tensor where selection needs it: `shape`, `dtype`,
    `device`, `len`, row selection `emb[idx]` (an int, a slice, an index tensor or list, an [N]
    bool mask; the result stays factored), `.to(device/dtype)`, and `.dense()`.
    """

    def __init__(self, G, H, R=None, *, columns=None):
        self.G, self.H, self.R = G, H, R
        _check_factors(G, H, R)
        N, C, _ = G.shape
        self.d_bar = H.shape[1]
        self.d_rest = 0 if R is None else R.shape[2]
        D = C * self.d_bar + self.d_rest
        self.columns = None if columns is None else _check_columns(columns, D)

    # -- tensor-like -------------------------------------------------------------------------
    @property
    def shape(self):
        N, C, _ = self.G.shape
        return torch.Size((N, C, C * self.d_bar + self.d_rest))

    @property
    def dtype(self):
        return self.G.dtype

    @property
    def device(self):
        return self.G.device

    @property
    def requires_grad(self):
        return any(t is not None and t.requires_grad for t in (self.G, self.H, self.R))

    @property
    def factors(self):
        """(name, tensor) of each factor present, in the order G, H, R."""
        return [(n, t) for n, t in (("G", self.G), ("H", self.H), ("R", self.R))
                if t is not None]

    def __len__(self):
        return self.G.shape[0]

    def __repr__(self):
        N, C, D = self.shape
        return (f"FactoredEmbeddings(N={N}, C={C}, D={D} = {C}·{self.d_bar} + {self.d_rest}, "
                f"{self.dtype}, {self.device})")

    def __getitem__(self, idx):
        """The rows `idx` selects, still factored (no [n, C, D] tensor is formed)."""
        if isinstance(idx, numbers.Integral) and not isinstance(idx, bool):
            N = len(self)
            if not -N <= idx < N:
                raise IndexError(f"row {idx} is out of range for {N} rows")
            idx = int(idx) % N
            idx = slice(idx, idx + 1)
        if isinstance(idx, (list, tuple)):
            idx = torch.as_tensor(idx, dtype=torch.long)
        if isinstance(idx, torch.Tensor):
            if idx.dtype == torch.bool and tuple(idx.shape) != (len(self),):
                raise IndexError(f"a bool mask must have shape [N] = [{len(self)}], got "
                                 f"{tuple(idx.shape)}")
            idx = idx.to(self.device)
        elif not isinstance(idx, slice):
            raise TypeError(f"FactoredEmbeddings rows are selected by an int, a slice, an "
                            f"index list or tensor, or an [N] bool mask, got "
                            f"{type(idx).__name__}")
        return self._like(*(None if t is None else t[idx] for t in (self.G, self.H, self.R)))

    def to(self, *args, **kwargs):
        """The factors moved or converted as Tensor.to(*args, **kwargs) would."""
        return self._like(*(None if t is None else t.to(*args, **kwargs)
                            for t in (self.G, self.H, self.R)))

    def detach(self):
        return self._like(*(None if t is None else t.detach() for t in (self.G, self.H, self.R)))

    @staticmethod
    def cat(parts):
        """The rows of several FactoredEmbeddings of one layout (same d̄, D_r, columns), in
        order, as one."""
        parts = list(parts)
        if not parts:
            raise ValueError("cat needs at least one FactoredEmbeddings")
        first = parts[0]
        for p in parts[1:]:
            if (p.shape[1:] != first.shape[1:] or p.d_bar != first.d_bar
                    or not _same_columns(p.columns, first.columns)):
                raise ValueError(f"cannot concatenate {p!r} to {first!r}: the layouts differ")
        R = None if first.R is None else torch.cat([p.R for p in parts])
        return FactoredEmbeddings(torch.cat([p.G for p in parts]), torch.cat([p.H for p in parts]),
                                  R, columns=first.columns)

    def _like(self, G, H, R):
        return FactoredEmbeddings(G, H, R, columns=self.columns)

    # -- values ------------------------------------------------------------------------------
    def natural(self, dtype=None):
        """The [N, C, D] matrix in natural column order (classifier block k-major, then R)."""
        dtype = dtype or self.dtype
        G, H = self.G.to(dtype), self.H.to(dtype)
        N, C, _ = G.shape
        cls = (G[:, :, :, None] * H[:, None, None, :]).reshape(N, C, C * self.d_bar)
        return cls if self.R is None else torch.cat([cls, self.R.to(dtype)], dim=2)

    def dense(self, dtype=None):
        """The [N, C, D] matrix X, in the column order of the dense embeddings of the same mask
        (masked_grad_embeddings(..., factored=False)); in `dtype` (default: the factors'). Each
        entry is one product G_i[c, k]·h̄_i[m], rounded to that dtype: dense(torch.float64) of
        float32 factors is exact."""
        X = self.natural(dtype)
        if self.columns is None:
            return X
        out = torch.empty_like(X)
        out[:, :, self.columns.to(X.device)] = X
        return out

    def to_natural(self, F):
        """A [D, D] matrix in the dense column order, seen in the natural order."""
        return to_natural(F, self.columns)

    def from_natural(self, F):
        """A [D, D] matrix in the natural column order, seen in the dense order."""
        return from_natural(F, self.columns)


def to_natural(F, columns):
    """F [D, D] in the dense column order, in the natural order (`columns`: natural -> dense
    position, or None when the two orders are one)."""
    if columns is None:
        return F
    cols = columns.to(F.device)
    return F[cols][:, cols]


def from_natural(F, columns):
    """F [D, D] in the natural column order, in the dense order (to_natural's inverse)."""
    if columns is None:
        return F
    cols = columns.to(F.device)
    out = torch.empty_like(F)
    out[cols[:, None], cols[None, :]] = F
    return out


def _same_columns(a, b):
    return (a is None and b is None) or (a is not None and b is not None and torch.equal(a, b))


def _check_factors(G, H, R):
    """ValueError/TypeError naming the factor and what was expected."""
    for name, t in (("G", G), ("H", H), ("R", R)):
        if t is None and name != "R":
            raise TypeError(f"{name} is required: a tensor ({'[N, C, C]' if name == 'G' else '[N, d̄]'})")
        if t is not None and not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if G.dim() != 3 or G.shape[1] != G.shape[2]:
        raise ValueError(f"G must be [N, C, C] (each candidate's C×C classifier factor), got "
                         f"shape {tuple(G.shape)}")
    N, C, _ = G.shape
    if C == 0:
        raise ValueError("G has C = 0 classes; the factors need C >= 1")
    want = {"H": f"[N, d̄] = [{N}, d̄]", "R": f"[N, C, D_r] = [{N}, {C}, D_r]"}
    if H.dim() != 2 or H.shape[0] != N:
        raise ValueError(f"H must be {want['H']} (one classifier input per candidate, the "
                         f"same N as G), got shape {tuple(H.shape)}")
    if R is not None and (R.dim() != 3 or R.shape[:2] != (N, C)):
        raise ValueError(f"R must be {want['R']} (the same N and C as G), got shape "
                         f"{tuple(R.shape)}")
    if G.dtype not in _FLOATS:
        raise TypeError(f"G must be float32 or float64, got {G.dtype}; convert with .float()")
    for name, t in (("H", H), ("R", R)):
        if t is None:
            continue
        if t.dtype != G.dtype:
            raise TypeError(f"{name} is {t.dtype} but G is {G.dtype}; the factors share one "
                            f"dtype: convert with .to({G.dtype})")
        if t.device != G.device:
            raise ValueError(f"{name} is on {t.device} but G is on {G.device}; the factors "
                             f"share one device: move it with .to({str(G.device)!r})")
    if H.shape[1] == 0:
        raise ValueError("H has d̄ = 0 columns: a factored embedding needs the classifier's "
                         "input (d̄ >= 1); pass the R columns alone as a dense tensor")


def _check_columns(columns, D):
    columns = torch.as_tensor(columns).to("cpu")
    if columns.dtype not in (torch.int32, torch.int64) or tuple(columns.shape) != (D,):
        raise ValueError(f"columns must be a [D] = [{D}] integer permutation, got "
                         f"{columns.dtype} {tuple(columns.shape)}")
    columns = columns.long()
    if not torch.equal(torch.sort(columns).values, torch.arange(D)):
        raise ValueError(f"columns must be a permutation of 0..{D - 1} (each dense column once)")
    return columns
