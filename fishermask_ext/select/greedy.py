"""Greedy Fisher trace-ratio batch selection (FisherMask / BAIT, docs/ALGORITHM.md, step E)
over a set of candidates: the `select_batch` front-end of the selection core (core.py)."""
from .checks import check_embeddings
from .core import (check_options, given_labeled_fisher, labeled_mean, make_plan,
                   one_labeled_source)
from .fisher import checked_sums

__all__ = ["select_batch"]


def select_batch(unlabeled, budget, *, labeled=None, labeled_fisher=None, n_labeled=None,
                 pool_fisher=None, lamb=1.0, backward_steps=0, backend="auto", parity=False,
                 progress=False, return_gains=False):
    """Pick `budget` candidates that greedily minimise the Fisher trace ratio tr(M⁻¹F).

    Args:
        unlabeled: [N, C, D] float32/float64, the embedding X_i of each unlabeled candidate: a
            torch tensor, a numpy array (numpy results come back), FactoredEmbeddings (the
            classifier block kept as G ⊗ h̄: the same picks at a fraction of the memory and
            work), or an embedding store (fishermask_ext.open_store: read chunk by chunk,
            never loaded whole).
        budget: K, the number of candidates to pick (1 <= K <= N).
        labeled: [n_L, C, D] embeddings of the labeled points (same dtype/device; dense or
            factored), or None.
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
        progress: True shows a tqdm bar over the picks (needs tqdm, from the `al` extra);
            None shows one when stderr is a terminal, once the selection has run a few
            seconds; False (default) never. With a bar the loop runs step by step in Python
            over the native step ops (the bar names the engine; the picks are the same).
        return_gains: also return each pick's gain (below).

    Returns:
        [K] int64 positions into `unlabeled`, in pick order; with return_gains, (picks, gains)
        with gains [K] float64: the decrease of tr(M⁻¹F) each pick brought when it was picked
        (its greedy score; survivors of backward pruning keep their forward gains). A numpy
        `unlabeled` gives numpy arrays, a tensor gives tensors on its device.

    float32 embeddings are a storage format: every product over them runs in float64 (they are
    converted chunk by chunk or in registers), and P, A_i, B_i and F are float64. float32 and
    float64 embeddings holding the same values therefore give the same picks, except at true
    near-ties (scores equal to about 1e-12 relative). The caller's tensors are never modified.
    """
    U = check_embeddings(unlabeled, "unlabeled")
    opts = check_options(lamb, backward_steps, parity, progress, return_gains, backend)
    plan = make_plan(U, budget, available=U.shape[0], what="candidates in unlabeled", opts=opts)
    F_L, n_L = _labeled_fisher(U, labeled, labeled_fisher, n_labeled)
    # The NaN/Inf check of `unlabeled` comes with its Fisher sum (or runs alone without one).
    sum_U = checked_sums(U, "unlabeled", [None])[0] if pool_fisher is None else None
    if pool_fisher is not None:
        U.check_finite("unlabeled")
    plan.mix_fisher(sum_U, U.shape[0], F_L, n_L, pool_fisher)
    picks, gains = plan.run()
    return U.give_back(picks, gains) if return_gains else U.give_back(picks)[0]


def _labeled_fisher(U, labeled, labeled_fisher, n_labeled):
    """(F_L [D, D] float64 in U's working order, n_L) from `labeled` or from
    (`labeled_fisher`, `n_labeled`)."""
    one_labeled_source(labeled, labeled_fisher)
    if labeled is None:
        return given_labeled_fisher(labeled_fisher, n_labeled, U)
    L = check_embeddings(labeled, "labeled", allow_empty=True)
    if L.shape[1:] != U.shape[1:]:
        raise ValueError(f"labeled has [C, D] = {list(L.shape[1:])} but unlabeled has "
                         f"{list(U.shape[1:])}; embed both with the same mask")
    if L.device != U.device or L.dtype != U.dtype:
        raise ValueError(f"labeled is {L.dtype} on {L.device} but unlabeled is "
                         f"{U.dtype} on {U.device}; convert one to match")
    (total,) = checked_sums(L, "labeled", [None])
    # From labeled's working order to unlabeled's, through the dense order both share.
    return labeled_mean(U.to_working(L.from_working(total)), L.shape[0]), L.shape[0]
