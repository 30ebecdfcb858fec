"""The CUDA step kernels (W/Z producer, update-and-score, grid argmax), run on the CPU through
csrc/testing/cuda_on_cpu.h, against the twin: every C from 1 to 17 (the per-C kernels and the
workspace path), float32 and float64 X, σ = ±1, both A/B layouts, parity rounding, N not a
multiple of a block's candidates, several blocks (the shim's device holds 2 at once, so the
grid-stride loops and the last-block reduction run), and empty inputs."""
import pytest
import torch

from fishermask_ext.ops import reference
from fishermask_ext.testing import greedy_terms, tol

pytestmark = pytest.mark.slow     # compiles csrc/cuda as host C++ first


def step_args(N, C, D, dtype, layout="contiguous", seed=0, ties=False):
    """A, B, X, UV, scale, S, Q, eligible as the greedy loop hands them to a step."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)
    G, H = r(N, C, C), r(N, C, C)
    A, B = (0.2 / C) * G @ G.mT, H @ H.mT        # I ± A positive definite for most candidates
    if ties and N > 3:                  # equal candidates (equal scores), better than the rest
        A[N // 2:] = A[N // 2]
        B[N // 2:] = 10 * B[N // 2]
    if layout == "candidate-minor":               # CUDA's greedy loop: [C, C, N] memory
        A, B = A.permute(1, 2, 0).contiguous().permute(2, 0, 1), B.permute(1, 2, 0).contiguous().permute(2, 0, 1)
    S0, Q0 = r(C, C) * 0.1, r(C, C)
    X = r(N, C, D)
    if ties and N > 3:
        X[N // 2:] = X[N // 2]
    UV = r(D, 2 * C) * (0.3 / (C * D) ** 0.5)
    eligible = torch.rand(N, generator=g) > 0.3
    return [A, B, X.to(dtype), UV, 0.7, S0 @ S0.T + torch.eye(C, dtype=torch.float64), Q0 @ Q0.T,
            eligible]


def run_both(op, args, sigma, round_scores=False, with_uv=True):
    """(emulated CUDA result, twin result), each on its own copy of the arguments."""
    args = list(args)
    if not with_uv:
        args[3] = None
    mine = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
    twin = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
    got = op(*mine, sigma, round_scores)
    ref = reference.trace_ratio_step(*twin, sigma, round_scores)
    return (mine, got), (twin, ref)


def assert_same_step(mine, got, twin, ref, D=None):
    """The step on D columns (default: those of X, mine[2]) agrees with the twin: A and B (X·UV,
    D terms, then the C×C update), updated in place alike, and the scores (one greedy step)."""
    C, D, f64 = mine[0].shape[-1], mine[2].shape[-1] if D is None else D, torch.float64
    torch.testing.assert_close(mine[0], twin[0], **tol(f64, terms=D + 3 * C, magnitude=twin[0]))
    torch.testing.assert_close(mine[1], twin[1], **tol(f64, terms=D + 3 * C, magnitude=twin[1]))
    assert mine[0].stride() == twin[0].stride()
    torch.testing.assert_close(got[0], ref[0], **tol(f64, terms=greedy_terms(D, C),
                                                     magnitude=ref[0]))
    assert int(got[1]) == int(ref[1])


@pytest.mark.parametrize("C", range(1, 18))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_step_every_C(shim, C, dtype):
    # N = 21 leaves a short last group of candidates; D = 37 a short last D-chunk.
    for sigma, layout in ((1.0, "contiguous"), (-1.0, "candidate-minor")):
        (mine, got), (twin, ref) = run_both(shim.trace_ratio_step, step_args(21, C, 37, dtype, layout, seed=C), sigma)
        assert_same_step(mine, got, twin, ref)
        assert torch.isfinite(ref[0][twin[7]]).float().mean() > 0.5   # real scores compared


@pytest.mark.parametrize("shape", [(1, 1, 1), (40, 3, 70), (150, 2, 5), (9, 17, 33)], ids=str)
@pytest.mark.parametrize("with_uv", [True, False])
@pytest.mark.parametrize("round_scores", [False, True])
def test_step_shapes_and_modes(shim, shape, with_uv, round_scores):
    """N = 150 at C = 2 spans several grid strides of both kernels; score-only (no UV) and parity
    rounding take their own branches."""
    (mine, got), (twin, ref) = run_both(shim.trace_ratio_step, step_args(*shape, torch.float64),
                                        1.0, round_scores, with_uv)
    assert_same_step(mine, got, twin, ref)


@pytest.mark.parametrize("C", [3, 17])
def test_ties_go_to_the_lowest_index(shim, C):
    """Equal candidates in every block: the argmax across blocks keeps the first of them."""
    (mine, got), (twin, ref) = run_both(shim.trace_ratio_step,
                                        step_args(60, C, 11, torch.float64, ties=True), 1.0)
    assert_same_step(mine, got, twin, ref)
    assert int(got[1]) == int(twin[7][30:].nonzero()[0, 0]) + 30   # the first of the tied


@pytest.mark.parametrize("C", [2, 12, 17])
def test_update_equals_step_of_its_product(shim, C):
    """trace_ratio_update(A, B, X·UV, ...) is trace_ratio_step(A, B, X, UV, ...)."""
    A, B, X, UV, scale, S, Q, el = step_args(45, C, 19, torch.float64, seed=3)
    WZ = torch.einsum("ncd,dk->nck", X, UV)
    A2, B2 = A.clone(), B.clone()
    got = shim.trace_ratio_update(A, B, WZ, scale, S, Q, el, 1.0)
    ref = reference.trace_ratio_step(A2, B2, X, UV, scale, S, Q, el, 1.0)
    assert_same_step([A, B], got, [A2, B2], ref, X.shape[-1])


@pytest.mark.parametrize("C", [3, 17])
def test_update_without_products_only_scores(shim, C):
    """WZ [N, C, 0]: no update, scores only (the first step of a factored selection)."""
    A, B, X, UV, scale, S, Q, el = step_args(21, C, 5, torch.float64, seed=4)
    A2, B2 = A.clone(), B.clone()
    got = shim.trace_ratio_update(A, B, X.new_empty(21, C, 0), scale, S, Q, el, -1.0)
    ref = reference.trace_ratio_update(A2, B2, None, scale, S, Q, el, -1.0)
    assert_same_step([A, B], got, [A2, B2], ref, X.shape[-1])


def test_empty_and_all_ineligible(shim):
    args = step_args(0, 4, 6, torch.float32)
    scores, best = shim.trace_ratio_step(*args, 1.0)
    assert scores.shape == (0,) and int(best) == -1
    args = step_args(10, 4, 6, torch.float32)
    args[7][:] = False
    scores, best = shim.trace_ratio_step(*args, 1.0)
    assert int(best) == -1 and bool(torch.isneginf(scores).all())


def test_zero_classes_rejected(shim):
    """C = 0 once reached the kernel and read out of bounds; the shared check stops it."""
    A = torch.zeros(3, 0, 0, dtype=torch.float64)
    args = [A, A.clone(), torch.zeros(3, 0, 5), None, 1.0, torch.zeros(0, 0, dtype=torch.float64),
            torch.zeros(0, 0, dtype=torch.float64), torch.ones(3, dtype=torch.bool), 1.0]
    for op in (shim.trace_ratio_step, torch.ops.fishermask_ext.trace_ratio_step):
        with pytest.raises(RuntimeError, match="C >= 1"):
            op(*args)


# The CPU-run CUDA tests can fail: the step kernels with one planted slip each (conftest.PLANTED,
# compiled into their own op namespaces) fail the checks that the real kernels pass.
def test_planted_off_by_one_is_caught(shim):
    op = torch.ops.planted_off_by_one.trace_ratio_step
    (mine, got), (twin, ref) = run_both(op, step_args(21, 3, 37, torch.float64), 1.0)
    with pytest.raises(AssertionError):
        assert_same_step(mine, got, twin, ref)


def test_planted_wrong_comparison_is_caught(shim):
    op = torch.ops.planted_comparison.trace_ratio_step
    (mine, got), (twin, ref) = run_both(op, step_args(60, 3, 11, torch.float64, ties=True), 1.0)
    with pytest.raises(AssertionError):
        assert_same_step(mine, got, twin, ref)
