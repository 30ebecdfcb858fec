"""The bytes and FLOPs of one selection, counted from the algorithm, written once: `fishermask
bench` and benchmarks/bench_gpu.py state achieved GB/s and GFLOP/s from these counts.

Why counted, not measured: a rate against the machine's own copy and float64 GEMM rates tells
how far a kernel is from what the hardware allows only if the work is the work the algorithm
needs, whichever engine runs it. Leading terms per candidate, symmetric products counted once
(as the kernels take them); the twin does the same work with more memory traffic, so its rates
read lower. Notation as docs/SCALING.md: N candidates, C classes, D columns, s bytes per stored
value, factored rows with d̄ and D_r (D = C·d̄ + D_r).

One selection of K picks with no labeled points (b = 0): the pool Fisher, the initial A_i and
B_i, a first pass that only scores, then K − 1 steps that each commit the last pick (u, v and
P −= u S uᵀ: 8·C·D² FLOPs, P and F read, P written) and update and score every candidate.
"""

__all__ = ["row_bytes", "step_counts", "selection_counts"]

F64 = 8
SCORE_ONLY_FLOPS = 2 / 3 + 2     # per C³: Cholesky of I + A_i, two triangular solves
UPDATE_FLOPS = 8 + SCORE_ONLY_FLOPS   # per C³: T = WS, A −= TWᵀ, G = Z − ½TQ, B's half, score


def row_bytes(C, D, itemsize, factors=None):
    """Bytes of one stored candidate: C·D values, or C² + d̄ + C·D_r of its factors when
    `factors` = (d̄, D_r)."""
    if factors is None:
        return C * D * itemsize
    d_bar, d_rest = factors
    return (C * C + d_bar + C * d_rest) * itemsize


def step_counts(N, C, D, itemsize, *, round_trip, factors=None):
    """(bytes, FLOPs) of one greedy step that updates and scores N candidates: the rows read
    once for W, Z = X·[u v] (4·C²·D FLOPs a candidate; through the factors
    4·C·(C·d̄ + C² + C·D_r)), A and B read and written, the score written and eligibility read,
    and the per-candidate C×C update and score. `round_trip`: the products are written and read
    again between two kernels (CUDA's producer and update kernels; the CPU fuses them)."""
    if factors is None:
        product_flops = 4 * C * C * D
    else:
        d_bar, d_rest = factors
        product_flops = 4 * C * (C * d_bar + C * C + C * d_rest)
    products = 2 * C * 2 * C * F64 if round_trip else 0
    nbytes = N * (row_bytes(C, D, itemsize, factors) + products + 4 * C * C * F64 + 9)
    return nbytes, N * (product_flops + UPDATE_FLOPS * C ** 3)


def _once_flops(C, D, factors):
    """Per candidate, (its share of the pool Fisher X_iᵀX_i, its initial A_i and B_i): a
    symmetric sandwich X_i G X_iᵀ is C·D² dense, and through the factors the classifier block
    pairs, the cross block and the rest, C²·d̄² + 2·C·d̄·D_r + C·D_r²; A_i = X̃_iX̃_iᵀ and B's
    final C×C products are 2·C²·D dense, 4·C³ + 4·C²·D_r through the factors."""
    if factors is None:
        return C * D * D, C * D * D + 2 * C * C * D
    d_bar, d_rest = factors
    sandwich = C * C * d_bar * d_bar + 2 * C * d_bar * d_rest + C * d_rest * d_rest
    return sandwich, sandwich + 4 * C ** 3 + 4 * C * C * d_rest


def selection_counts(N, C, D, K, itemsize, *, round_trip, factors=None):
    """{"bytes", "flops", "steps"} of selecting K of N candidates (see the module docstring):
    the Fisher and the initial A, B read the rows once each, and the init writes A and B."""
    rows = N * row_bytes(C, D, itemsize, factors)
    AB = 2 * N * C * C * F64
    fisher, init = _once_flops(C, D, factors)
    step_bytes, step_flops = step_counts(N, C, D, itemsize, round_trip=round_trip,
                                         factors=factors)
    nbytes = 2 * rows + AB + (AB + 9 * N) + (K - 1) * (step_bytes + 3 * D * D * F64)
    flops = (N * (fisher + init + SCORE_ONLY_FLOPS * C ** 3)
             + (K - 1) * (step_flops + 8 * C * D * D))
    return dict(bytes=nbytes, flops=flops, steps=K)
