"""Greedy Fisher trace-ratio batch selection (FisherMask / BAIT, docs/ALGORITHM.md, step E):
`select_batch` over a set of candidates, and the core both it and `select_from_pool` run."""
import math
import numbers
import warnings
from contextlib import contextmanager
from types import SimpleNamespace

import torch

from .._checks import check_bool, check_int
from ..ops import resolve
from ..ops.loop import greedy_loop
from ..ops.sizes import BLOCK, chunk_rows
from .checks import check_embeddings, check_finite, check_fisher
from .fisher import checked_sums

__all__ = ["select_batch"]


def select_batch(unlabeled, budget, *, labeled=None, labeled_fisher=None, n_labeled=None,
                 pool_fisher=None, lamb=1.0, backward_steps=0, backend="auto", parity=False,
                 progress=False, return_gains=False):
    """Pick `budget` candidates that greedily minimise the Fisher trace ratio tr(M⁻¹F).

    Args:
        unlabeled: [N, C, D] float32/float64, the embedding X_i of each unlabeled candidate: a
            torch tensor, a numpy array (numpy results come back), or an embedding store
            (fishermask_ext.open_store: read chunk by chunk, never loaded whole).
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
        progress: show a tqdm bar over the picks (needs tqdm, from the `al` extra).
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
    N, C, D = U.shape
    K = check_int(budget, "budget")
    if not 1 <= K <= N:
        raise ValueError(f"budget must be between 1 and the pool size N={N}, got {K}; "
                         f"ask for at most {N} points")
    opts = check_options(lamb, backward_steps, parity, progress, return_gains)
    F_L, n_L = _labeled_fisher(U, labeled, labeled_fisher, n_labeled)
    if pool_fisher is None:
        # The NaN/Inf check of `unlabeled` comes with its Fisher.
        (F_U,) = checked_sums(U, "unlabeled", [None])
        F = (F_U + F_L * n_L) / (N + n_L)
    else:
        F = check_fisher(pool_fisher, "pool_fisher", D, U.device)
        check_finite(U, "unlabeled")
    picks, gains = run_greedy(U, None, N, F, F_L, n_L, K, backend=backend, **opts)
    return U.give_back(picks, gains) if return_gains else U.give_back(picks)[0]


def check_options(lamb, backward_steps, parity, progress, return_gains):
    """The options select_batch and select_from_pool share, checked once."""
    backward_steps = check_int(backward_steps, "backward_steps", minimum=0)
    if not (isinstance(lamb, numbers.Real) and math.isfinite(lamb) and lamb > 0):
        raise ValueError(f"lamb must be a finite number > 0, got {lamb!r}")
    for flag, name in ((parity, "parity"), (progress, "progress"),
                       (return_gains, "return_gains")):
        check_bool(flag, name)
    return dict(lamb=float(lamb), backward_steps=backward_steps, parity=parity,
                progress=progress)


def initial_inverse(F_L, n_L, K, lamb, D, device):
    """P0 = M0⁻¹ with M0 = λI + n_L/(n_L+K)·F_L, and the pick scale sqrt(K/(n_L+K)).

    BAIT's normalisation over the final labeled set of n_L + K points: the old labels' share
    n_L/(n_L+K) of it (F_L is their mean), and the batch's share K/(n_L+K) given to every pick
    through X̃ = sqrt(K/(n_L+K))·X, as BAIT and the reference do (docs/ALGORITHM.md, "Why the
    weights n_L/(n_L+K) and K/(n_L+K)")."""
    eye = torch.eye(D, dtype=torch.float64, device=device)
    if n_L == 0:
        # M0 = λI: its inverse through a 1×1 factorisation holds the very value the D×D one
        # would give on its diagonal (LAPACK's (1/√λ)², zeros elsewhere), without two O(D³)
        # calls (0.16 s of a 5.6 s selection at D = 1,402 on 2 cores).
        one = torch.full((1, 1), lamb, dtype=torch.float64, device=device)
        return eye * torch.cholesky_inverse(torch.linalg.cholesky(one)), math.sqrt(K / (n_L + K))
    L0, info = torch.linalg.cholesky_ex(lamb * eye + (n_L / (n_L + K)) * F_L)
    if int(info) != 0:
        raise ValueError("lamb·I + n_L/(n_L+K)·labeled_fisher is not positive definite: "
                         "labeled_fisher must be positive semi-definite (a mean of XᵀX)")
    return torch.cholesky_inverse(L0), math.sqrt(K / (n_L + K))


def loop_ops(device, backend):
    """The step ops ops.loop drives, native or twins, for `device`."""
    return SimpleNamespace(**{name: resolve(name, device, backend) for name in
                              ("trace_ratio_init", "trace_ratio_step", "commit_direction")})


def run_greedy(rows, candidates, n_candidates, F, F_L, n_L, K, *, lamb, backward_steps, backend,
               parity, progress):
    """Step E on `rows` (select.rows.Rows), picking among `candidates` ([N] bool or None: all).
    One in-memory tensor without a progress bar runs the native loop in one call (no host
    round trip per step); stores and progress bars run the same loop in Python (ops.loop)."""
    N, C, D = rows.shape
    P0, scale = initial_inverse(F_L, n_L, K, lamb, D, rows.device)
    n_forward = min((backward_steps + 1) * K, n_candidates)
    args = (P0, F, scale, K, n_forward, chunk_rows(C, D), BLOCK, parity)
    if rows.tensor is not None and not progress:
        return resolve("greedy_select", rows.device, backend)(rows.tensor, *args, candidates)
    with progress_bar(progress, 2 * n_forward - K, "picks") as on_step:
        return greedy_loop(rows.blocks(candidates), *args, ops=loop_ops(rows.device, backend),
                           on_step=on_step)


@contextmanager
def progress_bar(show, total, unit):
    """on_step(t, n) for ops.loop: a tqdm bar when `show` (and tqdm is installed), else None."""
    if not show:
        yield None
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:
        warnings.warn("progress=True needs tqdm (pip install tqdm); selecting without a bar")
        yield None
        return
    with tqdm(total=total, unit=unit, desc="selecting") as bar:
        yield lambda t, n: bar.update(1)


def _labeled_fisher(U, labeled, labeled_fisher, n_labeled):
    """(F_L [D, D] float64, n_L) from `labeled` or from (`labeled_fisher`, `n_labeled`)."""
    D = U.shape[2]
    if labeled is not None and labeled_fisher is not None:
        raise ValueError("give either labeled (embeddings) or labeled_fisher, not both")
    if labeled is not None:
        L = check_embeddings(labeled, "labeled", allow_empty=True)
        if L.shape[1:] != U.shape[1:]:
            raise ValueError(f"labeled has [C, D] = {L.shape[1:]} but unlabeled has "
                             f"{U.shape[1:]}; embed both with the same mask")
        if L.device != U.device or L.dtype != U.dtype:
            raise ValueError(f"labeled is {L.dtype} on {L.device} but unlabeled is "
                             f"{U.dtype} on {U.device}; convert one to match")
        (total,) = checked_sums(L, "labeled", [None])
        return total / max(L.shape[0], 1), L.shape[0]
    return given_labeled_fisher(labeled_fisher, n_labeled, D, U.device)


def given_labeled_fisher(labeled_fisher, n_labeled, D, device):
    """(F_L, n_L) from the caller's labeled_fisher and n_labeled (zeros, 0 when both are None)."""
    if labeled_fisher is not None:
        if n_labeled is None:
            raise ValueError("labeled_fisher needs n_labeled, the number of labeled points "
                             "it averages (an int >= 0)")
        n_labeled = check_int(n_labeled, "n_labeled", minimum=0)
        return check_fisher(labeled_fisher, "labeled_fisher", D, device), n_labeled
    if n_labeled is not None:
        raise ValueError("n_labeled is only used with labeled_fisher; pass labeled_fisher too")
    return torch.zeros(D, D, dtype=torch.float64, device=device), 0
