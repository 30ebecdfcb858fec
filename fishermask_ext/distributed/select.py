"""Exact sharded selection: select_batch over a pool whose candidates are spread across ranks.

Each rank holds a contiguous shard of the candidates (any size, 0 included) and optionally a
shard of the labeled points. F and F_L are all-reduced, so P, u and v are replicated; each rank
keeps the A_i, B_i of its own rows and scores them with trace_ratio_step; per step one
all_gather finds the global best and its rank broadcasts x_j (comm.step_exchange). X is never
gathered. The picks are those of fishermask_ext.select_batch on the concatenation of the shards
in rank order (up to the rounding of sums formed in another order: a near-tie may differ).
"""
import torch
import torch.distributed as dist

from .._checks import check_int
from ..select.checks import check_embeddings
from ..select.core import (check_options, given_labeled_fisher, labeled_mean, make_plan,
                           one_labeled_source)
from ..select.fisher import checked_sums
from .comm import agree, comm_device, guarded, require_group, step_exchange

__all__ = ["select_batch", "LAST_EXCHANGE"]

LAST_EXCHANGE = dict(seconds=0.0, steps=0)

_AGREED = ("C", "D", "factored", "layout", "dtype", "budget", "lamb", "backward_steps", "backend", "parity",
           "return_gains", "has_labeled", "has_labeled_fisher", "n_labeled", "has_pool_fisher",
           "device_type")


def select_batch(local_unlabeled, budget, *, labeled=None, labeled_fisher=None, n_labeled=None,
                 pool_fisher=None, lamb=1.0, backward_steps=0, backend="auto", parity=False,
                 progress=False, return_gains=False, group=None):
    """fishermask_ext.select_batch on the concatenation of every rank's `local_unlabeled`.

    Call it on every rank of `group` (default: the world) with that rank's shard [n_r, C, D]
    (a tensor, numpy array or embedding store; n_r may be 0) and, optionally, its shard of the
    labeled points `labeled`. `labeled_fisher`, `n_labeled` and `pool_fisher`, when given, are
    the global ones and must be the same on every rank. Returns the same [K] int64 global
    positions (into the concatenation of the shards in rank order) on every rank, and with
    return_gains the gains too. Shapes, dtypes, budget and options are compared across the
    ranks before any work; a mismatch, or an error on any rank, raises on every rank.
    """
    rank, _ = require_group(group)

    def check_local():
        one_labeled_source(labeled, labeled_fisher)
        U = check_embeddings(local_unlabeled, "local_unlabeled", allow_empty=True)
        L = None if labeled is None else check_embeddings(labeled, "labeled", allow_empty=True)
        if L is not None and (L.shape[1:] != U.shape[1:] or L.dtype != U.dtype
                              or L.factored != U.factored or L.device != U.device):
            raise ValueError(f"labeled is [*, {L.shape[1]}, {L.shape[2]}] {L.dtype} but "
                             f"local_unlabeled is [*, {U.shape[1]}, {U.shape[2]}] {U.dtype}; "
                             f"embed both with the same mask, dtype, device and layout (dense "
                             f"or factored)")
        return U, L, check_int(budget, "budget"), check_options(
            lamb, backward_steps, parity, progress, return_gains, backend)

    U, L, K, opts = guarded(check_local, group, "checking its inputs")
    N_r, C, D = U.shape
    # A factored shard's column layout too: sums of shards in other orders must never be added.
    layout = None if not U.factored else (U.d_bar, U.d_rest, None if U.columns is None
                                          else U.columns.tolist())
    metas = agree(dict(C=C, D=D, factored=U.factored, layout=layout, dtype=str(U.dtype),
                       budget=K,
                       lamb=opts["lamb"],
                       backward_steps=opts["backward_steps"], backend=backend,
                       parity=parity, return_gains=return_gains, has_labeled=L is not None,
                       has_labeled_fisher=labeled_fisher is not None, n_labeled=n_labeled,
                       has_pool_fisher=pool_fisher is not None, device_type=U.device.type,
                       N=N_r, n_L=0 if L is None else L.shape[0]), group, _AGREED)
    sizes = [m["N"] for m in metas]
    N = sum(sizes)
    if N == 0:
        raise ValueError("the global pool is empty: every rank's local_unlabeled has 0 rows")
    plan = make_plan(U, K, available=N, what=f"candidates of the global pool (shards {sizes})",
                     opts=opts, sharded=True)
    dev = U.device

    def local_sums():
        F_L, n_L = given_labeled_fisher(labeled_fisher, n_labeled, U)
        sums = torch.zeros(2, D, D, dtype=torch.float64, device=dev)
        if pool_fisher is None:
            sums[0] = checked_sums(U, "local_unlabeled", [None])[0]
        else:
            U.check_finite("local_unlabeled")
        if L is not None:
            sums[1] = U.to_working(L.from_working(checked_sums(L, "labeled", [None])[0]))
        return sums, F_L, n_L

    sums, F_L, n_L = guarded(local_sums, group, "forming its Fisher sums")
    wire = sums.to(comm_device(group))
    dist.all_reduce(wire, group=group)       # Σ over every rank's rows of X_iᵀX_i
    sums = wire.to(dev)
    replicated = [F_L] + ([pool_fisher.to(dev, torch.float64)]
                          if isinstance(pool_fisher, torch.Tensor) else [])
    _check_replicated(replicated, group, "labeled_fisher / pool_fisher")
    if L is not None:
        n_L = sum(m["n_L"] for m in metas)
        F_L = labeled_mean(sums[1], n_L)
    guarded(lambda: plan.mix_fisher(sums[0], N, F_L, n_L, pool_fisher), group,
            "checking pool_fisher")
    blocks = U.blocks()
    for blk in blocks:                       # global positions: shards in rank order
        blk.start += sum(sizes[:rank])
    exchange = step_exchange(group, C, D)
    picks, gains = plan.run(blocks, exchange=exchange, show_progress=rank == 0)
    # For benchmarks/bench_scale.py: seconds in the per-step collectives, and their count.
    LAST_EXCHANGE.update(seconds=exchange.seconds, steps=exchange.steps)
    return U.give_back(picks, gains) if return_gains else U.give_back(picks)[0]


def _check_replicated(tensors, group, name):
    """ValueError on every rank unless every rank holds the same values (compared through a
    float64 fingerprint: the sum, the sum of squares and a position-weighted sum)."""
    prints = []
    for t in tensors:
        flat = t.reshape(-1).to(torch.float64)
        w = torch.arange(1, flat.numel() + 1, dtype=torch.float64, device=flat.device)
        prints += [float(flat.sum()), float((flat * flat).sum()), float((flat * w).sum())]
    agree(dict(fingerprint=prints), group, ["fingerprint"]) if prints else None
