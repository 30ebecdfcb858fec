"""The selection ops: native trace_ratio_step / greedy_select == twins, opcheck, bad input."""
import pytest
import torch

import fishermask_ext as fm
from fishermask_ext import reference

from testing import DEVICES, DTYPES, require_native


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


# Native and twin do the same float64 arithmetic (X's values are exact in both dtypes) in other
# orders: each product of D terms differs by at most ~D·2⁻⁵³ relative, and the C×C Cholesky and
# solves (I + σA well conditioned here: ‖A‖ < 1/2 mostly) amplify it by a modest factor. 1e-10
# leaves four orders of magnitude of room over D, C <= 40 and still fails on any float32 product
# (~1e-7).
TOL = dict(rtol=1e-10, atol=1e-10)


def _native_step():
    return torch.ops.fishermask_ext.trace_ratio_step.default


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
# C = 1, 2, 13, 17 cover every column layout of the CPU kernel (a lone 4-lane block, several
# passes of full blocks with and without a 4-lane or padded last block); N = 103 leaves short
# groups of candidates at both threads' range ends.
@pytest.mark.parametrize("shape", [(0, 3, 4), (1, 1, 1), (7, 3, 5), (33, 10, 17), (5, 13, 3),
                                   (9, 2, 40), (12, 17, 9), (103, 4, 30)], ids=str)
@pytest.mark.parametrize("with_uv", [True, False])
@pytest.mark.parametrize("sigma", [1.0, -1.0])
def test_trace_ratio_step_matches_twin(device, dtype, shape, with_uv, sigma):
    require_native(device, "trace_ratio_step")
    args = _step_args(*shape, dtype, device, with_uv)
    twin = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
    s_nat, b_nat = _native_step()(*args, sigma)
    s_ref, b_ref = reference.trace_ratio_step(*twin, sigma)
    torch.testing.assert_close(args[0], twin[0], **TOL)     # A updated in place alike
    torch.testing.assert_close(args[1], twin[1], **TOL)     # B
    torch.testing.assert_close(s_nat, s_ref, **TOL)
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
        assert scores[2] == pytest.approx(-2.0) and int(best) == 2
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
        torch.testing.assert_close(args[1], twin[1], **TOL)
        torch.testing.assert_close(s_nat, s_ref, **TOL)
        assert int(b_nat) == int(b_ref)
        assert torch.isfinite(s_ref[args[7]]).any()


@pytest.mark.parametrize("impl", ["native", "twin"])
def test_nan_scores_are_never_picked(impl):
    """A NaN score counts as -inf, on every device and in the twin (the argmax's one rule)."""
    if impl == "native":
        require_native("cpu", "trace_ratio_step")
    step = _native_step() if impl == "native" else reference.trace_ratio_step
    A = torch.zeros(4, 2, 2, dtype=torch.float64)
    B = torch.eye(2, dtype=torch.float64).repeat(4, 1, 1) * torch.tensor([1., 5., 2., 3.])[:, None, None]
    B[1, 0, 0] = float("nan")                     # the best candidate, but NaN
    X = torch.zeros(4, 2, 3, dtype=torch.float64)
    eye = torch.eye(2, dtype=torch.float64)
    scores, best = step(A, B, X, None, 1.0, eye, eye, torch.ones(4, dtype=torch.bool), 1.0)
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
    torch.testing.assert_close(s_m, s_c, rtol=0, atol=0)
    torch.testing.assert_close(minor[1], args[1], rtol=0, atol=0)
    assert int(b_m) == int(b_c)


def _commit_args(D, C, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)
    G, H = r(D, D), r(D, D)
    P = G @ G.T / D + torch.eye(D, dtype=torch.float64)
    F = H @ H.T / D
    S0 = r(C, C)
    S = S0 @ S0.T / C
    return [t.to(device) for t in (P, F, r(C, D), S)]


_GENERIC = torch._C.DispatchKeySet(torch._C.DispatchKey.CompositeExplicitAutograd)


@pytest.mark.parametrize("D, C", [(1, 1), (7, 3), (40, 10), (97, 13), (130, 2)])
def test_commit_direction_cpu_generic_twin_agree(D, C):
    """The CPU kernel, the generic ATen kernel (what CUDA and every other device run; reached
    here through a redispatch) and the twin, on the same commit."""
    require_native("cpu", "commit_direction")
    op = torch.ops.fishermask_ext.commit_direction.default
    args = _commit_args(D, C, seed=D)
    P_cpu, P_gen, P_ref = (args[0].clone() for _ in range(3))
    uv_cpu = op(P_cpu, *args[1:])
    uv_gen = op.redispatch(_GENERIC, P_gen, *args[1:])
    uv_ref = reference.commit_direction(P_ref, *args[1:])
    for uv, P in ((uv_cpu, P_cpu), (uv_gen, P_gen)):
        assert uv.shape == (D, 2 * C)
        torch.testing.assert_close(uv, uv_ref, **TOL)
        torch.testing.assert_close(P, P_ref, **TOL)
    assert not torch.equal(P_ref, args[0])               # P was updated


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_commit_direction(device):
    require_native(device, "commit_direction")
    for D, C in ((5, 2), (9, 1)):
        torch.library.opcheck(torch.ops.fishermask_ext.commit_direction,
                              tuple(_commit_args(D, C, device=device)))


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


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", [(5, 2, 3, 1, 1), (8, 3, 5, 3, 6), (4, 1, 7, 4, 4)], ids=str)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("round_scores", [False, True])
def test_opcheck_greedy_select(dtype, case, device, round_scores):
    require_native(device)
    N, C, D, K, n_forward = case
    X = torch.randn(N, C, D, dtype=dtype).to(device)
    F = fm.fisher_matrix(X)
    P0 = torch.eye(D, dtype=torch.float64, device=device) * 0.5
    args = (X, P0, F, 0.9, K, n_forward, 3, 2, round_scores)
    torch.library.opcheck(torch.ops.fishermask_ext.greedy_select, args)
    got = torch.ops.fishermask_ext.greedy_select(*args)
    assert got.tolist() == reference.greedy_select(*args).tolist()


def test_greedy_select_under_torch_compile():
    require_native("cpu")
    X = torch.randn(10, 2, 4, dtype=torch.float64)
    F = fm.fisher_matrix(X)
    P0 = torch.eye(4, dtype=torch.float64)
    fn = torch.compile(
        lambda x: torch.ops.fishermask_ext.greedy_select(x, P0, F, 1.0, 3, 3, 4, 2),
        fullgraph=True, backend="eager")
    assert fn(X).tolist() == reference.greedy_select(X, P0, F, 1.0, 3, 3, 4, 2).tolist()


X0 = torch.randn(6, 2, 3, dtype=torch.float64)


@pytest.mark.parametrize("kwargs, match", [
    (dict(unlabeled=X0, budget=0), "budget must be between 1"),
    (dict(unlabeled=X0, budget=7), "budget must be between 1 and the pool size N=6"),
    (dict(unlabeled=X0, budget=2.5), "budget must be an int"),
    (dict(unlabeled=X0[:0], budget=1), "empty"),
    (dict(unlabeled=X0[0], budget=1), r"\[N, C, D\]"),
    (dict(unlabeled=X0.long(), budget=1), "float32 or float64"),
    (dict(unlabeled=X0, budget=2, labeled=torch.randn(3, 2, 4, dtype=torch.float64)),
     "same mask"),
    (dict(unlabeled=X0, budget=2, labeled=torch.randn(3, 2, 3)), "convert one to match"),
    (dict(unlabeled=X0, budget=2, labeled_fisher=torch.eye(3, dtype=torch.float64)),
     "needs n_labeled"),
    (dict(unlabeled=X0, budget=2, n_labeled=3), "only used with labeled_fisher"),
    (dict(unlabeled=X0, budget=2, labeled=X0, labeled_fisher=torch.eye(3)), "not both"),
    (dict(unlabeled=X0, budget=2, pool_fisher=torch.tensor([[1.0, 2.0, 0], [0, 1, 0], [0, 0, 1]])),
     "not symmetric"),
    (dict(unlabeled=X0, budget=2, pool_fisher=torch.eye(4)), r"\[D, D\] = \[3, 3\]"),
    (dict(unlabeled=X0, budget=2, pool_fisher=torch.eye(3) * float("nan")), "NaN or Inf"),
    (dict(unlabeled=X0, budget=2, labeled_fisher=torch.eye(3) * float("inf"), n_labeled=2),
     "NaN or Inf"),
    (dict(unlabeled=X0, budget=2, labeled_fisher=-9 * torch.eye(3), n_labeled=4),
     "labeled_fisher must be positive semi-definite"),
    (dict(unlabeled=X0, budget=2, backward_steps=-1), "backward_steps must be an int >= 0"),
    (dict(unlabeled=X0, budget=2, lamb=0.0), "lamb must be a finite number > 0"),
    (dict(unlabeled=X0, budget=2, backend="gpu"), "backend must be one of"),
])
def test_bad_input_raises(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        fm.select_batch(**kwargs)


@pytest.mark.parametrize("where", [(0, 0, 0), (5, 1, 2)])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_inf_embeddings_raise(where, bad):
    X = X0.clone()
    X[where] = bad
    with pytest.raises(ValueError, match=f"NaN or Inf .*first bad rows: \\[{where[0]}\\]"):
        fm.select_batch(X, 2)
    with pytest.raises(ValueError, match="labeled contains NaN or Inf"):
        fm.select_batch(X0, 2, labeled=X)
    # With a given pool Fisher the scan cannot ride on the Fisher product: it runs on its own.
    with pytest.raises(ValueError, match=f"unlabeled contains NaN or Inf .*\\[{where[0]}\\]"):
        fm.select_batch(X, 2, pool_fisher=torch.eye(3, dtype=torch.float64))
    with pytest.raises(ValueError, match=f"emb contains NaN or Inf .*\\[{where[0]}\\]"):
        fm.fisher_matrix(X)


def test_overflowing_embeddings_raise():
    X = X0.clone()
    X[2, 0, 1] = 1e160                    # finite, but its square overflows float64
    with pytest.raises(ValueError, match="so large that XᵀX overflows .*rescale"):
        fm.select_batch(X, 2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a second device kind (CUDA)")
def test_mixed_devices_raise():
    with pytest.raises(ValueError, match="move it"):
        fm.select_batch(X0, 2, pool_fisher=torch.eye(3, device="cuda"))


def test_mixed_devices_raise_meta():
    # A meta-device pool Fisher stands in for a second device on CPU-only machines.
    with pytest.raises(ValueError, match="is on meta but the embeddings are on cpu"):
        fm.select_batch(X0, 2, pool_fisher=torch.eye(3, device="meta"))


def test_native_backend_missing_device_is_clear():
    if fm.native_available("cuda"):
        pytest.skip("CUDA kernels are built here")
    with pytest.raises(RuntimeError, match="no compiled kernel for device"):
        from fishermask_ext._ops import resolve
        resolve("greedy_select", torch.device("cuda"), "native")
