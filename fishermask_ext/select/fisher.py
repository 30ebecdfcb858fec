"""Pool and labeled Fisher matrices: means of X_iᵀX_i, in float64 arithmetic, chunk by chunk."""
import torch

from ..ops.sizes import BLOCK
from .checks import check_embeddings, check_finite

__all__ = ["fisher_matrix", "checked_sums"]


def fisher_matrix(emb):
    """Mean per-sample Fisher, (1/N) Σ_i X_iᵀ X_i, in float64.

    emb: [N, C, D] float32 or float64 embeddings (a tensor, numpy array or embedding store).
    Returns [D, D] float64 (zeros when N = 0). One symmetric product of the (N·C)×D matrix
    (only its lower block triangle is computed, about 5/8 of the multiply-adds of a plain XᵀX),
    in float64 arithmetic whatever the dtype of emb: a float32 input is converted chunk by chunk.
    """
    rows = check_embeddings(emb, "emb", allow_empty=True)
    (total,) = checked_sums(rows, "emb", [None])
    return total / max(rows.shape[0], 1)


def checked_sums(rows, name, masks):
    """Σ X_iᵀX_i over the rows each mask selects ([N] bool, or None: every row), [D, D] float64
    each, in one pass over `rows`, and the NaN/Inf check of `rows` for free: the diagonal of a
    sum is a sum of squares of the entries it covers, so it is finite exactly when they are
    (barring overflow). Only when it is not does the full scan run, to name the bad rows."""
    D = rows.shape[2]
    sums = [torch.zeros(D, D, dtype=torch.float64, device=rows.device) for _ in masks]
    for s, X in rows.chunks():
        for out, m in zip(sums, masks):
            Xc = X if m is None else X[m[s:s + len(X)]]     # a chunk-sized gather at most
            _add_gram(out, Xc.reshape(-1, D).to(torch.float64))
    sums = [out.tril() + out.tril(-1).T for out in sums]
    for total in sums:
        if not bool(torch.isfinite(total.diagonal()).all()):
            check_finite(rows, name)
            biggest = max(float(X.abs().max()) for _, X in rows.chunks() if X.numel())
            raise ValueError(f"{name} has entries so large that XᵀX overflows "
                             f"(max |x| = {biggest:.3g}); rescale the embeddings")
    return sums


def _add_gram(out, X2):
    """out += lower block triangle of X2ᵀX2 (a blocked SYRK: the upper blocks are skipped)."""
    D = X2.shape[1]
    for j in range(0, D, BLOCK):
        out[j:, j:j + BLOCK] += X2[:, j:].T @ X2[:, j:j + BLOCK]
