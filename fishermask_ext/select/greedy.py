"""Greedy Fisher trace-ratio batch selection (FisherMask / BAIT, docs/ALGORITHM.md, step E)."""
import math
import numbers

import torch

from .._checks import check_bool, check_int
from ..ops import resolve
from ..ops.sizes import BLOCK, chunk_rows

__all__ = ["select_batch", "fisher_matrix"]


def fisher_matrix(emb):
    """Mean per-sample Fisher, (1/N) Σ_i X_iᵀ X_i, in float64.

    emb: [N, C, D] float32 or float64 embeddings. Returns [D, D] float64 (zeros when N = 0).
    One symmetric product of the (N·C)×D matrix (only its lower block triangle is computed,
    about 5/8 of the multiply-adds of a plain XᵀX), in float64 arithmetic whatever the dtype
    of emb: a float32 input is converted chunk by chunk.
    """
    _check_embeddings(emb, "emb", allow_empty=True, finite=False)
    return _checked_fisher(emb, "emb")


def _checked_fisher(emb, name):
    """_fisher, and the NaN/Inf check of `emb` for free: the diagonal of F is a sum of squares
    of every entry, so it is finite exactly when emb is (barring overflow). Only when it is not
    does the full scan run, to name the bad rows."""
    F = _fisher(emb)
    if not bool(torch.isfinite(F.diagonal()).all()):
        _check_finite(emb, name)
        raise ValueError(f"{name} has entries so large that XᵀX overflows "
                         f"(max |x| = {float(emb.abs().max()):.3g}); rescale the embeddings")
    return F


def _fisher(emb):
    """fisher_matrix without the argument checks (for inputs already checked)."""
    N, C, D = emb.shape
    out = torch.zeros(D, D, dtype=torch.float64, device=emb.device)
    rows = chunk_rows(C, D)
    for s in range(0, N, rows):
        Xc = emb[s:s + rows].reshape(-1, D).to(torch.float64)
        for j in range(0, D, BLOCK):           # lower block triangle only (a blocked SYRK)
            out[j:, j:j + BLOCK] += Xc[:, j:].T @ Xc[:, j:j + BLOCK]
    out = out.tril() + out.tril(-1).T
    return out / max(N, 1)


def select_batch(unlabeled, budget, *, labeled=None, labeled_fisher=None, n_labeled=None,
                 pool_fisher=None, lamb=1.0, backward_steps=0, backend="auto", parity=False):
    """Pick `budget` candidates that greedily minimise the Fisher trace ratio tr(M⁻¹F).

    Args:
        unlabeled: [N, C, D] float32/float64, the embedding X_i of each unlabeled candidate.
        budget: K, the number of candidates to pick (1 <= K <= N).
        labeled: [n_L, C, D] embeddings of the labeled points (same dtype/device), or None.
        labeled_fisher: [D, D] F_L (mean of X_iᵀX_i over labeled points), instead of `labeled`.
        n_labeled: n_L; required with `labeled_fisher`.
        pool_fisher: [D, D] F; default: mean of X_iᵀX_i over unlabeled and labeled points.
        lamb: λ > 0, the ridge of M = λI + ... (BAIT used 0.01).
        backward_steps: b >= 0; pick (b+1)·K forward (at most N), then prune back to K.
        backend: "auto" (native kernels when built for the device, else the PyTorch twin),
            "native" or "torch".
        parity: round every score to float32 before its argmax (ties to the lowest index), as
            the reference FisherMask code does: with the same float64 embeddings this
            reproduces its picks where they differ from exact float64 scores only by rounding.

    Returns:
        [K] int64 positions into `unlabeled`, in pick order.

    float32 embeddings are a storage format: every product over them runs in float64 (they are
    converted chunk by chunk or in registers), and P, A_i, B_i and F are float64. float32 and
    float64 embeddings holding the same values therefore give the same picks, except at true
    near-ties (scores equal to about 1e-12 relative). The caller's tensors are never modified.
    """
    # The NaN/Inf scan of `unlabeled` comes with its Fisher below when that is computed here.
    _check_embeddings(unlabeled, "unlabeled", finite=pool_fisher is not None)
    N, C, D = unlabeled.shape
    K = check_int(budget, "budget")
    if not 1 <= K <= N:
        raise ValueError(f"budget must be between 1 and the pool size N={N}, got {K}; "
                         f"ask for at most {N} points")
    backward_steps = check_int(backward_steps, "backward_steps", minimum=0)
    if not (isinstance(lamb, numbers.Real) and math.isfinite(lamb) and lamb > 0):
        raise ValueError(f"lamb must be a finite number > 0, got {lamb!r}")
    check_bool(parity, "parity")

    F_L, n_L = _labeled_fisher(unlabeled, labeled, labeled_fisher, n_labeled)
    if pool_fisher is None:
        F = (_checked_fisher(unlabeled, "unlabeled") * N + F_L * n_L) / (N + n_L)
    else:
        F = _check_fisher(pool_fisher, "pool_fisher", unlabeled)
    eye = torch.eye(D, dtype=torch.float64, device=unlabeled.device)
    # BAIT's normalisation over the final labeled set of n_L + K points: the old labels' share
    # n_L/(n_L+K) of it (F_L is their mean), and the batch's share K/(n_L+K) given to every
    # pick through X̃ = sqrt(K/(n_L+K))·X, as BAIT and the reference do (docs/ALGORITHM.md,
    # "Why the weights n_L/(n_L+K) and K/(n_L+K)").
    M0 = lamb * eye + (n_L / (n_L + K)) * F_L
    L0, info = torch.linalg.cholesky_ex(M0)
    if int(info) != 0:
        raise ValueError("lamb·I + n_L/(n_L+K)·labeled_fisher is not positive definite: "
                         "labeled_fisher must be positive semi-definite (a mean of XᵀX)")
    P0 = torch.cholesky_inverse(L0)
    scale = math.sqrt(K / (n_L + K))
    n_forward = min((backward_steps + 1) * K, N)
    op = resolve("greedy_select", unlabeled.device, backend)
    return op(unlabeled, P0, F, scale, K, n_forward, chunk_rows(C, D), BLOCK, parity)


def _check_embeddings(x, name, allow_empty=False, finite=True):
    """Type, shape and (when `finite`) NaN/Inf checks of an [N, C, D] embedding tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [N, C, D], got {type(x).__name__}")
    if x.dim() != 3:
        raise ValueError(f"{name} must have shape [N, C, D] (N points, C classes, D masked "
                         f"parameters), got shape {tuple(x.shape)}")
    if x.dtype in (torch.float16, torch.bfloat16):
        raise TypeError(f"{name} is {x.dtype}: selection reads float32 or float64 embeddings "
                        f"(float32 is stored as is and computed in float64); convert with "
                        f"{name}.float()")
    if x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{name} must be float32 or float64, got {x.dtype}; "
                        f"convert with .float() or .double()")
    if not allow_empty and x.shape[0] == 0:
        raise ValueError(f"{name} is empty (N = 0): there is nothing to select from")
    if x.shape[1] == 0 or x.shape[2] == 0:
        raise ValueError(f"{name} has C = {x.shape[1]} and D = {x.shape[2]}; both must be >= 1")
    if finite:
        _check_finite(x, name)


def _check_finite(x, name):
    rows = chunk_rows(x.shape[1], x.shape[2])
    for s in range(0, x.shape[0], rows):          # chunked: no N·C·D-sized temporary
        finite = torch.isfinite(x[s:s + rows]).flatten(1).all(1)
        if not bool(finite.all()):
            bad = ((~finite).nonzero().flatten()[:5] + s).tolist()
            raise ValueError(f"{name} contains NaN or Inf (first bad rows: {bad}); "
                             f"recompute or drop those embeddings")


def _check_fisher(F, name, like):
    D = like.shape[2]
    if not isinstance(F, torch.Tensor) or tuple(F.shape) != (D, D):
        shape = tuple(F.shape) if isinstance(F, torch.Tensor) else type(F).__name__
        raise ValueError(f"{name} must be a [D, D] = [{D}, {D}] tensor, got {shape}")
    if F.device != like.device:
        raise ValueError(f"{name} is on {F.device} but the embeddings are on {like.device}; "
                         f"move it with .to({str(like.device)!r})")
    if F.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{name} must be float32 or float64, got {F.dtype}")
    F = F.to(torch.float64)
    if not bool(torch.isfinite(F).all()):
        raise ValueError(f"{name} contains NaN or Inf")
    tol = 1e-6 * max(float(F.abs().max()), 1e-300)
    if float((F - F.T).abs().max()) > tol:
        raise ValueError(f"{name} is not symmetric (max |F - Fᵀ| = "
                         f"{float((F - F.T).abs().max()):.3g}); pass (F + F.T) / 2")
    return (F + F.T) / 2     # exactly symmetric: the greedy loop relies on it


def _labeled_fisher(unlabeled, labeled, labeled_fisher, n_labeled):
    """(F_L [D, D] float64, n_L) from `labeled` or from (`labeled_fisher`, `n_labeled`)."""
    D = unlabeled.shape[2]
    if labeled is not None and labeled_fisher is not None:
        raise ValueError("give either labeled (embeddings) or labeled_fisher, not both")
    if labeled is not None:
        _check_embeddings(labeled, "labeled", allow_empty=True, finite=False)
        if labeled.shape[1:] != unlabeled.shape[1:]:
            raise ValueError(f"labeled has [C, D] = {tuple(labeled.shape[1:])} but unlabeled has "
                             f"{tuple(unlabeled.shape[1:])}; embed both with the same mask")
        if labeled.device != unlabeled.device or labeled.dtype != unlabeled.dtype:
            raise ValueError(f"labeled is {labeled.dtype} on {labeled.device} but unlabeled is "
                             f"{unlabeled.dtype} on {unlabeled.device}; convert one to match")
        return _checked_fisher(labeled, "labeled"), labeled.shape[0]
    if labeled_fisher is not None:
        if n_labeled is None:
            raise ValueError("labeled_fisher needs n_labeled, the number of labeled points "
                             "it averages (an int >= 0)")
        n_labeled = check_int(n_labeled, "n_labeled", minimum=0)
        return _check_fisher(labeled_fisher, "labeled_fisher", unlabeled), n_labeled
    if n_labeled is not None:
        raise ValueError("n_labeled is only used with labeled_fisher; pass labeled_fisher too")
    return torch.zeros(D, D, dtype=torch.float64, device=unlabeled.device), 0
