"""Selection from a whole pool with a labeled mask, reading the pool in place (no copies of the
labeled or unlabeled rows)."""
from .checks import check_embeddings, check_mask
from .core import check_options, given_labeled_fisher, labeled_mean, make_plan
from .fisher import checked_sums

__all__ = ["select_from_pool"]


def select_from_pool(pool_emb, budget, labeled_mask, *, labeled_fisher=None, n_labeled=None,
                     pool_fisher=None, lamb=1.0, backward_steps=0, backend="auto", parity=False,
                     progress=False, return_gains=False):
    """select_batch over a pool's unlabeled points, returning positions into the pool.

    Args:
        pool_emb: [N, C, D] float32/float64 embeddings of every pool point: a torch tensor, a
            numpy array, FactoredEmbeddings, or an embedding store (read chunk by chunk).
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
    N = P.shape[0]
    mask = check_mask(labeled_mask, N, P.device)
    unlabeled = ~mask
    n_U = int(unlabeled.sum())
    if n_U == 0:
        raise ValueError(f"every one of the {N} pool points is labeled (labeled_mask is all "
                         f"True): there is nothing to select from")
    opts = check_options(lamb, backward_steps, parity, progress, return_gains, backend)
    plan = make_plan(P, budget, available=n_U, what=f"unlabeled points of the pool of {N}",
                     opts=opts, candidates=unlabeled)
    given = labeled_fisher is not None or n_labeled is not None
    F_L, n_L = given_labeled_fisher(labeled_fisher, n_labeled, P)
    # One pass forms the sums still needed; each is also the NaN/Inf check of its rows.
    masks = ([unlabeled] if pool_fisher is None else []) + ([] if given else [mask])
    sums = checked_sums(P, "pool_emb", masks) if masks else []
    if not given:
        n_L = N - n_U
        F_L = labeled_mean(sums[-1], n_L)
    if pool_fisher is not None:
        P.check_finite("pool_emb")            # the candidates were not covered by a sum
    plan.mix_fisher(sums[0] if pool_fisher is None else None, n_U, F_L, n_L, pool_fisher)
    picks, gains = plan.run()
    return P.give_back(picks, gains) if return_gains else P.give_back(picks)[0]
