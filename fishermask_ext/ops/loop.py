"""The greedy loop of step E in Python, over the step ops, for a pool that comes in blocks.

csrc/greedy_select.cpp is the same loop in C++ over one in-memory tensor (no host round trip per
step). This one drives any set of blocks (an in-memory tensor, chunks read from an embedding
store, one rank's shard of a pool spread over processes) with whichever ops it is given: the
native ops, or their twins (reference.greedy_select is this loop over the twins). Per step it
reads each block once, scores it with trace_ratio_step, and keeps the best candidate's row and
its A_j, B_j, so a block's rows need to be resident only while that block is scored.
"""
import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

__all__ = ["Block", "Best", "Kernels", "greedy_loop", "first_best"]


@dataclass
class Kernels:
    """What the loop runs on a block's rows X (whatever their layout, select.rows): `init(X,
    P0, F, scale)` -> (A, B); `step(A, B, X, UV, scale, S, Q, eligible, sigma, round_scores)`
    -> (scores, best), the update and scores of trace_ratio_step; `row(X, j)` -> x_j [C, D]
    f64; `commit`, commit_direction."""
    init: Callable
    step: Callable
    row: Callable
    commit: Callable


def first_best(scores, eligible):
    """Index [] int64 of the first maximal score; the first eligible index if all are -inf;
    -1 if nothing is eligible (the rule of every step kernel)."""
    if not bool(eligible.any()):
        return torch.full((), -1, dtype=torch.long, device=scores.device)
    if bool(torch.isneginf(scores).all()):
        return eligible.nonzero()[0, 0]
    return scores.argmax()   # documented to return the first of equal maxima


@dataclass
class Block:
    """Rows [start, start + n) of the pool. `load()` returns them, [n, C, D] (a view of a tensor
    in memory, or a fresh read from disk); `candidates` [n] bool says which may be picked (None:
    all). `A`, `B`, `selected` are the loop's state of these rows."""
    load: Callable[[], torch.Tensor]
    start: int
    n: int
    candidates: Optional[torch.Tensor] = None
    A: Optional[torch.Tensor] = None
    B: Optional[torch.Tensor] = None
    selected: Optional[torch.Tensor] = None


@dataclass(order=True)
class Best:
    """A candidate of one step: compared by (score, -index), so the maximum is the highest score
    and, among equal scores (-inf included: nothing scored finite), the lowest global index."""
    key: tuple = field(init=False, repr=False)
    score: float = field(compare=False)
    index: int = field(compare=False)                        # global; -1: no eligible row
    payload: Optional[tuple] = field(default=None, compare=False)   # (x_j, A_j, B_j)

    def __post_init__(self):
        self.key = (self.score, -self.index) if self.index >= 0 else (-math.inf, -math.inf)


NONE = Best(-math.inf, -1)


def _eligible(blk, forward):
    if not forward:
        return blk.selected.clone()
    free = ~blk.selected
    return free if blk.candidates is None else free & blk.candidates


def _score_blocks(blocks, kernels, UV, scale, S, Q, forward, round_scores):
    """One trace_ratio_step per block; the best of them, with its row, A_j and B_j."""
    best = NONE
    sigma = 1.0 if forward else -1.0
    for blk in blocks:
        if blk.n == 0:
            continue
        X = blk.load()
        if UV is None:                   # the first scoring: no update, S and Q unused
            S = Q = torch.eye(blk.A.shape[1], dtype=torch.float64, device=blk.A.device)
        scores, j = kernels.step(blk.A, blk.B, X, UV, scale, S, Q, _eligible(blk, forward),
                                 sigma, round_scores)
        j = int(j)
        if j < 0:
            continue
        cand = Best(float(scores[j]), blk.start + j)
        if cand > best:
            # Kept now: the next step updates A and B in place, and X may not stay resident.
            cand.payload = (kernels.row(X, j), blk.A[j].clone(), blk.B[j].clone())
            best = cand
    return best


def greedy_loop(blocks, P0, F, scale, budget, n_forward, round_scores, *, kernels,
                exchange=None, on_step=None):
    """Step E over `blocks` (see Block). Returns (picks [budget] int64 global indices in pick
    order, gains [budget] float64: each pick's score when it was picked).

    kernels: the Kernels of the blocks' layout (native ops or twins). exchange(score) -> Best: `score()` scores this process's blocks and returns its
    best candidate; exchange turns it into the global one (in one process, just score(); across
    ranks, a collective in fishermask_ext.distributed, which also tells every rank when one of
    them failed inside score()). The winner's payload must be filled on return. on_step(t, n_steps): progress, called per commit.
    """
    dev = P0.device

    def first():
        for blk in blocks:
            if blk.n:
                blk.A, blk.B = kernels.init(blk.load(), P0, F, scale)
            blk.selected = torch.zeros(blk.n, dtype=torch.bool, device=dev)
        return _score_blocks(blocks, kernels, None, scale, None, None, True, round_scores)

    exchange = exchange or (lambda score: score())
    P = P0.clone(memory_format=torch.contiguous_format)   # updated in place by the commit
    order, gains, kept = [], [], set()
    best = exchange(first)
    n_steps = 2 * n_forward - budget        # n_forward picks, then n_forward - budget removals
    for t in range(n_steps):
        forward = t < n_forward
        if best.index < 0:
            raise RuntimeError("no eligible candidate left; the caller checks the budget "
                               "against the number of candidates")
        j = best.index
        for blk in blocks:                   # the owner marks it
            if blk.start <= j < blk.start + blk.n:
                blk.selected[j - blk.start] = forward
        if forward:
            order.append(j)
            gains.append(best.score)
            kept.add(j)
        else:
            kept.discard(j)
        if on_step is not None:
            on_step(t, n_steps)
        if t + 1 == n_steps:
            break
        x_j, A_j, B_j = best.payload
        eye = torch.eye(A_j.shape[0], dtype=torch.float64, device=dev)
        # As in csrc/greedy_select.cpp: σ = -1 removes x̃_j (Woodbury with a minus); S and Q
        # symmetrised, since the step evaluates the update in a form that assumes it.
        sigma = 1.0 if forward else -1.0
        S = torch.linalg.inv(sigma * eye + A_j)
        S = (S + S.T) / 2
        Q = (B_j + B_j.T) / 2
        UV = kernels.commit(P, F, x_j * scale, S)
        best = exchange(lambda: _score_blocks(blocks, kernels, UV, scale, S, Q, t + 1 < n_forward,
                                              round_scores))
    keep = [i for i, j in enumerate(order) if j in kept]
    return (torch.tensor([order[i] for i in keep], dtype=torch.long, device=dev),
            torch.tensor([gains[i] for i in keep], dtype=torch.float64, device=dev))
