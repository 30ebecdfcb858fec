"""Oracles shared by the tests and the benchmarks (written once, imported by both)."""
import math

import torch

__all__ = ["direct_select"]


def direct_select(X, K, labeled=None, lamb=1.0, backward_steps=0, return_gaps=False, F=None,
                  round_scores=False, dtype=torch.float64):
    """Step E of docs/ALGORITHM.md written out: A_i, B_i recomputed from scratch at every step,
    as the reference code does, in arithmetic `dtype` (float64 by default: the oracle of the
    tests; the benchmarks also time it in float32, the reference's own arithmetic).

    X: [N, C, D] unlabeled embeddings; labeled: [n_L, C, D] or None; F: [D, D] pool Fisher
    (default: the mean of X_iᵀX_i over unlabeled and labeled points). With round_scores, scores
    are rounded to float32 before each argmax (parity mode); ties go to the lowest index.
    Returns the K picks in pick order (a list), and with return_gaps also the relative gap
    between the two best scores at each forward step (how near a tie each pick was).
    """
    X = X.to(dtype)
    N, C, D = X.shape
    n_L = 0 if labeled is None else labeled.shape[0]
    flat = lambda E: E.reshape(-1, D)
    labeled = None if labeled is None else labeled.to(dtype)
    F_L = flat(labeled).T @ flat(labeled) / n_L if n_L else torch.zeros(D, D, dtype=dtype)
    allX = X if labeled is None else torch.cat([X, labeled])
    F = flat(allX).T @ flat(allX) / allX.shape[0] if F is None else F.to(dtype)
    # BAIT's normalisation: M is the mean over the final labeled set of n_L + K points.
    M = lamb * torch.eye(D, dtype=dtype) + n_L / (n_L + K) * F_L
    Xt = X * math.sqrt(K / (n_L + K))
    eye = torch.eye(C, dtype=dtype)
    picked, gaps = [], []

    def scores(sigma, cand):
        P = torch.linalg.inv(M)
        Xc = Xt[cand]
        A = Xc @ P @ Xc.mT
        B = Xc @ P @ F @ P @ Xc.mT
        s = torch.linalg.solve(sigma * eye + A, B).diagonal(dim1=-2, dim2=-1).sum(-1)
        return s.float().double() if round_scores else s

    for _ in range(min((backward_steps + 1) * K, N)):
        taken = set(picked)
        cand = [i for i in range(N) if i not in taken]
        s = scores(1.0, cand)
        top = torch.topk(s, min(2, len(cand))).values
        gaps.append(float((top[0] - top[-1]) / top[0].abs()) if len(cand) > 1 else math.inf)
        j = cand[int(s.argmax())]
        picked.append(j)
        M = M + Xt[j].T @ Xt[j]
    while len(picked) > K:           # backward pruning: drop the least useful pick
        j = picked[int(scores(-1.0, picked).argmax())]
        picked.remove(j)
        M = M - Xt[j].T @ Xt[j]
    return (picked, gaps) if return_gaps else picked
