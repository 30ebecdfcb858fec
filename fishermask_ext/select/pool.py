"""Selection from a whole pool with a labeled mask, reading the pool in place (no copies of the
labeled or unlabeled rows)."""
import torch

from .._checks import check_int
from .checks import check_embeddings, check_finite, check_fisher, check_mask
from .fisher import checked_sums
from .greedy import check_options, given_labeled_fisher, run_greedy

__all__ = ["select_from_pool"]


def select_from_pool(pool_emb, budget, labeled_mask, *, labeled_fisher=None, n_labeled=None,
                     pool_fisher=None, lamb=1.0, backward_steps=0, backend="auto", parity=False,
                     progress=False, return_gains=False):
    """select_batch over a pool's unlabeled points, returning positions into the pool.

    Args:
        pool_emb: [N, C, D] float32/float64 embeddings of every pool point: a torch tensor, a
            numpy array, or an embedding store (read chunk by chunk).
        budget: K, 1 <= K <= the number of unlabeled points.
        labeled_mask: [N] bool (tensor or array), True where the point is labeled. The labeled
            Fisher F_L is the mean of X_iᵀX_i over those rows, formed in place;
            `labeled_fisher` with `n_labeled` replaces it (e.g. zeros: labeled points left out of
            the initial M but still counted in n_L).
        the rest: as select_batch.

    Returns:
        [K] int64 positions into the pool in pick order (with return_gains, (picks, gains)), the
        same picks as select_batch(pool[~mask], K, labeled=pool[mask]) mapped back to the pool.
    The rows are read where they are: only [N, C, C] float64 scores and one chunk of rows at a
    time are added to memory (labeled rows get scores too but are never eligible).
    """
    P = check_embeddings(pool_emb, "pool_emb")
    N, C, D = P.shape
    mask = check_mask(labeled_mask, N, P.device)
    unlabeled = ~mask
    n_U = int(unlabeled.sum())
    if n_U == 0:
        raise ValueError(f"every one of the {N} pool points is labeled (labeled_mask is all "
                         f"True): there is nothing to select from")
    K = check_int(budget, "budget")
    if not 1 <= K <= n_U:
        raise ValueError(f"budget must be between 1 and the {n_U} unlabeled points of the pool, "
                         f"got {K}; ask for at most {n_U}")
    opts = check_options(lamb, backward_steps, parity, progress, return_gains)
    given = labeled_fisher is not None or n_labeled is not None
    F_L, n_L = given_labeled_fisher(labeled_fisher, n_labeled, D, P.device)
    # One pass forms the sums still needed; each is also the NaN/Inf check of its rows.
    masks = ([unlabeled] if pool_fisher is None else []) + ([] if given else [mask])
    sums = checked_sums(P, "pool_emb", masks) if masks else []
    if not given:
        n_L = N - n_U
        F_L = sums[-1] / max(n_L, 1)
    if pool_fisher is None:
        F = (sums[0] + F_L * n_L) / (n_U + n_L)
    else:
        F = check_fisher(pool_fisher, "pool_fisher", D, P.device)
        check_finite(P, "pool_emb")            # the candidates were not covered by a sum
    picks, gains = run_greedy(P, unlabeled, n_U, F, F_L, n_L, K, backend=backend, **opts)
    return P.give_back(picks, gains) if return_gains else P.give_back(picks)[0]
