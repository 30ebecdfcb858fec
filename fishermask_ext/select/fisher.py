"""Pool and labeled Fisher matrices: means of X_iᵀX_i, in float64 arithmetic, chunk by chunk."""
import torch

from .checks import check_embeddings

__all__ = ["fisher_matrix", "checked_sums"]


def fisher_matrix(emb):
    """Mean per-sample Fisher, (1/N) Σ_i X_iᵀ X_i, in float64.

    emb: [N, C, D] float32 or float64 embeddings (a tensor, numpy array, FactoredEmbeddings or
    embedding store). Returns [D, D] float64 (zeros when N = 0), in the column order of the
    dense embeddings. Dense rows: one symmetric product of the (N·C)×D matrix (only its lower
    block triangle is computed, about 5/8 of the multiply-adds of a plain XᵀX); factored rows:
    through the factors (docs/ALGORITHM.md, "Factored embeddings"); in float64 arithmetic
    whatever the dtype of emb: a float32 input is converted chunk by chunk.
    """
    rows = check_embeddings(emb, "emb", allow_empty=True)
    (total,) = checked_sums(rows, "emb", [None])
    return rows.from_working(total / max(rows.shape[0], 1))


def checked_sums(rows, name, masks):
    """Σ X_iᵀX_i over the rows each mask selects ([N] bool, or None: every row), [D, D] float64
    each in the rows' working order, in one pass over `rows`, and the NaN/Inf check of `rows`
    for free: the diagonal of a sum is a sum of squares of the entries it covers, so it is
    finite exactly when they are (barring overflow). (A factored row's diagonal holds
    G[c, k]²·h̄[m]² for every c, k, m and R's squares: every factor entry is covered, as NaN·0
    is NaN.) Only when it is not does the full scan run, to name the bad rows."""
    sums = rows.gram_sums(masks)
    for total in sums:
        if not bool(torch.isfinite(total.diagonal()).all()):
            rows.check_finite(name)
            raise ValueError(f"{name} has entries so large that XᵀX overflows "
                             f"(max |x| = {rows.max_abs():.3g}); rescale the embeddings")
    return sums
