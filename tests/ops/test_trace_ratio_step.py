"""trace_ratio_step: native == twin on every device and dtype, the shared kernel math for every
C, NaN and layout rules, opcheck and the fake kernel's checks."""
import pytest
import torch

from fishermask_ext.ops import reference
from fishermask_ext.testing import greedy_terms, tol

from testing import DEVICES, DTYPES, assert_native_and_fake_raise, require_native


def _step_args(N, C, D, dtype, device, with_uv=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)
    X = r(N, C, D)
    G = r(N, C, C)
    A = (0.2 / C) * G @ G.mT            # ‖A‖ < 1 mostly, so I - A is positive definite too
    H = r(N, C, C)
    B = H @ H.mT
    S0 = r(C, C) * 0.1
    S = S0 @ S0.T + torch.eye(C, dtype=torch.float64)
    Q0 = r(C, C)
    UV = r(D, 2 * C) * (0.3 / (C * D) ** 0.5) if with_uv else None   # a modest update
    eligible = torch.rand(N, generator=g) > 0.3
    to = lambda t, dt=torch.float64: None if t is None else t.to(device, dt)
    return [to(A), to(B), to(X, dtype), to(UV), 0.7, to(S), to(Q0 @ Q0.T),
            to(eligible, torch.bool)]





def _native_step():
    return torch.ops.fishermask_ext.trace_ratio_step.default


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
# Odd sizes: N = 0 and 1, C = 1 and above 16, D = 1; N = 103 leaves short groups of candidates
# at both threads' range ends (every C from 1 to 17 is in test_shared_kernel_math_every_C);
# D = 129 and 300 cross the 128-column tiles of float32 rows on AVX-512 (csrc/cpu/rows_times.h).
@pytest.mark.parametrize("shape", [(0, 3, 4), (1, 1, 1), (7, 3, 5), (33, 10, 17), (5, 13, 3),
                                   (9, 2, 40), (12, 17, 9), (103, 4, 30), (11, 3, 129),
                                   (17, 2, 300)], ids=str)
@pytest.mark.parametrize("with_uv", [True, False])
@pytest.mark.parametrize("sigma", [1.0, -1.0])
def test_trace_ratio_step_matches_twin(device, dtype, shape, with_uv, sigma):
    require_native(device, "trace_ratio_step")
    args = _step_args(*shape, dtype, device, with_uv)
    twin = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
    s_nat, b_nat = _native_step()(*args, sigma)
    s_ref, b_ref = reference.trace_ratio_step(*twin, sigma)
    N, C, D = shape
    f64 = torch.float64     # A, B: X·UV (D terms), then the C×C products of the update
    torch.testing.assert_close(args[0], twin[0], **tol(f64, terms=D + 3 * C, magnitude=twin[0]))
    torch.testing.assert_close(args[1], twin[1], **tol(f64, terms=D + 3 * C, magnitude=twin[1]))
    torch.testing.assert_close(s_nat, s_ref, **tol(f64, terms=greedy_terms(D, C), magnitude=s_ref))
    assert int(b_nat) == int(b_ref)
    el = args[7]
    if el.sum() > 2:     # the scores compared above are mostly finite, for both signs
        assert torch.isfinite(s_ref[el]).float().mean() > 0.5
    assert (int(b_nat) == -1) == (not bool(el.any()))
    if bool(el.any()):
        assert bool(el[int(b_nat)])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", ["native", "twin"])
def test_trace_ratio_step_round_scores(device, dtype, impl):
    """round_scores: the same scores rounded to float32, and the argmax taken over those."""
    if impl == "native":
        require_native(device, "trace_ratio_step")
    step = _native_step() if impl == "native" else reference.trace_ratio_step
    args = _step_args(33, 10, 17, dtype, device)
    other = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
    exact, _ = step(*args, 1.0)
    rounded, best = step(*other, 1.0, True)
    assert torch.equal(rounded, exact.float().double())
    el = args[7]
    assert int(best) == int(torch.where(el, rounded, -torch.inf).argmax())


@pytest.mark.parametrize("device", DEVICES)
def test_trace_ratio_step_not_positive_definite_scores_minus_inf(device):
    require_native(device, "trace_ratio_step")
    A = torch.zeros(3, 2, 2, dtype=torch.float64, device=device)
    A[1] = 2 * torch.eye(2)                               # I - A is negative definite
    B = torch.eye(2, dtype=torch.float64, device=device).expand(3, 2, 2).contiguous()
    X = torch.zeros(3, 2, 4, dtype=torch.float64, device=device)
    eye = torch.eye(2, dtype=torch.float64, device=device)
    el = torch.tensor([False, True, True], device=device)
    for op in (_native_step(), reference.trace_ratio_step):
        scores, best = op(A.clone(), B.clone(), X, None, 1.0, eye, eye, el, -1.0)
        assert scores[0] == float("-inf") and scores[1] == float("-inf")
        assert scores[2] == -2.0 and int(best) == 2      # -tr((I - 0)⁻¹·I): exact in binary
        scores, best = op(A.clone(), B.clone(), X, None, 1.0, eye, eye, el & False, 1.0)
        assert int(best) == -1


@pytest.mark.parametrize("C", range(1, 18))
@pytest.mark.parametrize("dtype", DTYPES)
def test_shared_kernel_math_every_C(C, dtype):
    """csrc/trace_ratio_math.h (also the CUDA kernel's per-candidate math) through the CPU op,
    for every C up to 17; N = 19 leaves a short group of candidates."""
    require_native("cpu", "trace_ratio_step")
    for sigma in (1.0, -1.0):
        args = _step_args(19, C, 7, dtype, "cpu", seed=C)
        twin = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
        s_nat, b_nat = _native_step()(*args, sigma)
        s_ref, b_ref = reference.trace_ratio_step(*twin, sigma)
        torch.testing.assert_close(args[1], twin[1],
                                   **tol(torch.float64, terms=7 + 3 * C, magnitude=twin[1]))
        torch.testing.assert_close(s_nat, s_ref,
                                   **tol(torch.float64, terms=greedy_terms(7, C), magnitude=s_ref))
        assert int(b_nat) == int(b_ref)
        assert torch.isfinite(s_ref[args[7]]).any()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("impl", ["native", "twin"])
def test_nan_scores_are_never_picked(device, impl):
    """A NaN score counts as -inf, on every device and in the twin (the argmax's one rule)."""
    if impl == "native":
        require_native(device, "trace_ratio_step")
    step = _native_step() if impl == "native" else reference.trace_ratio_step
    f64 = dict(dtype=torch.float64, device=device)
    A = torch.zeros(4, 2, 2, **f64)
    B = torch.eye(2, **f64).repeat(4, 1, 1) * torch.tensor([1., 5., 2., 3.], **f64)[:, None, None]
    B[1, 0, 0] = float("nan")                     # the best candidate, but NaN
    X = torch.zeros(4, 2, 3, **f64)
    eye = torch.eye(2, **f64)
    el = torch.ones(4, dtype=torch.bool, device=device)
    scores, best = step(A, B, X, None, 1.0, eye, eye, el, 1.0)
    assert scores[1] == float("-inf") and int(best) == 3


def test_candidate_minor_layout_matches_contiguous():
    """A, B stored [C, C, N] (the CUDA loop's coalesced layout) give what contiguous ones give."""
    require_native("cpu", "trace_ratio_step")
    args = _step_args(21, 4, 9, torch.float32, "cpu")
    minor = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
    for k in (0, 1):
        minor[k] = minor[k].permute(1, 2, 0).contiguous().permute(2, 0, 1)
    s_c, b_c = _native_step()(*args, 1.0)
    s_m, b_m = _native_step()(*minor, 1.0)
    assert minor[0].stride(0) == 1
    assert torch.equal(s_m, s_c) and torch.equal(minor[1], args[1])     # the same arithmetic
    assert int(b_m) == int(b_c)


@pytest.mark.parametrize("bad, match", [
    (lambda a: a.__setitem__(3, a[3].float()), "UV must be float64"),
    (lambda a: a.__setitem__(1, a[1].transpose(1, 2)), "share one layout"),
    (lambda a: a.__setitem__(5, a[5][:1]), "S must have shape"),
])
def test_trace_ratio_step_rejects_bad_arguments(bad, match):
    require_native("cpu", "trace_ratio_step")
    args = _step_args(6, 3, 4, torch.float32, "cpu")
    bad(args)
    with pytest.raises(RuntimeError, match=match):
        _native_step()(*args, 1.0)
    with pytest.raises(Exception, match=match):      # the fake kernel checks alike
        with torch._subclasses.fake_tensor.FakeTensorMode() as mode:
            fake = [mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args]
            _native_step()(*fake, 1.0)


def test_zero_classes_rejected_by_the_op_and_its_fake():
    """C = 0 (no scores to take): the op and its fake kernel both stop it, in checks.h's words
    (tests/cuda_on_cpu/test_step_kernels.py has the CUDA kernel's side)."""
    require_native("cpu", "trace_ratio_step")
    A, S = torch.zeros(3, 0, 0, dtype=torch.float64), torch.zeros(0, 0, dtype=torch.float64)
    args = [A, A.clone(), torch.zeros(3, 0, 5), None, 1.0, S, S.clone(),
            torch.ones(3, dtype=torch.bool), 1.0]
    assert_native_and_fake_raise(_native_step(), args,
                                 "A must be [N, C, C] with C >= 1, got [3, 0, 0]")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(0, 2, 3), (6, 3, 5), (9, 1, 4)], ids=str)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("round_scores", [False, True])
def test_opcheck_trace_ratio_step(dtype, shape, device, round_scores):
    require_native(device, "trace_ratio_step")
    for with_uv in (True, False):
        args = _step_args(*shape, dtype, device, with_uv)
        torch.library.opcheck(torch.ops.fishermask_ext.trace_ratio_step,
                              (*args, 1.0, round_scores))
