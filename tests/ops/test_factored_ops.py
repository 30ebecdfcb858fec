"""The factored-embedding ops (factored_times, factored_gram, factored_init) and the shared
update-and-score op (trace_ratio_update): native == twin == the dense product on every device
and dtype, empty and odd sizes, opcheck, and the argument checks."""
import pytest
import torch

from fishermask_ext import FactoredEmbeddings
from fishermask_ext.ops import reference
from fishermask_ext.testing import greedy_terms, tol

from testing import DEVICES, DTYPES, require_native

# (n, C, d̄, D_r): empty, one class, no R (BAIT), d̄ = 1, odd sizes, C above 16.
SHAPES = [(0, 3, 4, 2), (1, 1, 1, 1), (7, 3, 5, 0), (9, 4, 1, 6), (13, 10, 17, 5),
          (5, 17, 3, 2)]


def _factors(n, C, d, Dr, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).to(device, dtype)
    return r(n, C, C), r(n, d), (r(n, C, Dr) if Dr else None)


def _sym(D, device, seed=1):
    g = torch.Generator().manual_seed(seed)
    M = torch.randn(D, D, generator=g, dtype=torch.float64)
    return (M @ M.T / D + torch.eye(D, dtype=torch.float64)).to(device)


def _op(name):
    return getattr(torch.ops.fishermask_ext, name).default


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_factored_ops_match_twin_and_dense(device, dtype, shape):
    require_native(device, "factored_times")
    G, H, R = _factors(*shape, dtype, device)
    n, C, d, Dr = shape
    D = C * d + Dr
    X = FactoredEmbeddings(G, H, R).dense(torch.float64)    # exact: products of stored values
    M = torch.randn(D, 2 * C, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    M = M.to(device)
    f64 = torch.float64     # X's entries are exact products; sums of D (times) or n·C (gram)
    for impl in (_op("factored_times"), reference.factored_times):
        torch.testing.assert_close(impl(G, H, R, M), X @ M, **tol(f64, terms=D, magnitude=X @ M))
    gram = (X.reshape(-1, D).T @ X.reshape(-1, D)) if n else torch.zeros(D, D, dtype=X.dtype,
                                                                           device=device)
    for impl in (_op("factored_gram"), reference.factored_gram):
        torch.testing.assert_close(impl(G, H, R), gram, **tol(f64, terms=n * C, magnitude=gram))
    P0, F = _sym(D, device, 3), _sym(D, device, 4)
    for P in (P0, torch.eye(D, dtype=torch.float64, device=device) * 0.5):   # general, λ⁻¹I
        Q = P @ F @ P
        for impl in (_op("factored_init"), reference.factored_init):
            A, B = impl(G, H, R, P, F, 0.7, 4)
            want_A, want_B = 0.49 * X @ P @ X.mT, 0.49 * X @ ((Q + Q.T) / 2) @ X.mT
            torch.testing.assert_close(A, want_A, **tol(f64, terms=2 * D, magnitude=want_A))
            torch.testing.assert_close(B, want_B, **tol(f64, terms=4 * D, magnitude=want_B))


def _update_args(N, C, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)
    Ga = r(N, C, C)
    A = (0.2 / C) * Ga @ Ga.mT
    Hb = r(N, C, C)
    S0, Q0 = r(C, C) * 0.1, r(C, C)
    WZ = r(N, C, 2 * C) * 0.3 / C
    el = torch.rand(N, generator=g) > 0.3
    return [t.to(device) for t in (A, Hb @ Hb.mT, WZ)] + [0.7] + [
        t.to(device) for t in (S0 @ S0.T + torch.eye(C, dtype=torch.float64), Q0 @ Q0.T, el)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("N, C", [(0, 3), (1, 1), (19, 10), (21, 17), (9, 2)])
@pytest.mark.parametrize("sigma", [1.0, -1.0])
@pytest.mark.parametrize("update", [True, False])
def test_trace_ratio_update_matches_twin_and_step(device, N, C, sigma, update):
    """The shared update-and-score op equals its twin, and trace_ratio_step given X and UV
    equals it given WZ = X·UV: one kernel for dense and factored products."""
    require_native(device, "trace_ratio_update")
    args = _update_args(N, C, device)
    if not update:
        args[2] = args[2][:, :, :0]
    twin = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
    s, b = _op("trace_ratio_update")(*args, sigma)
    s_ref, b_ref = reference.trace_ratio_update(*twin, sigma)
    f64 = torch.float64     # the products WZ are given (no D terms): the C×C chain only
    torch.testing.assert_close(args[0], twin[0], **tol(f64, terms=3 * C, magnitude=twin[0]))
    torch.testing.assert_close(args[1], twin[1], **tol(f64, terms=3 * C, magnitude=twin[1]))
    torch.testing.assert_close(s, s_ref, **tol(f64, terms=greedy_terms(0, C), magnitude=s_ref))
    assert int(b) == int(b_ref)
    if update:
        # trace_ratio_step given X and UV updates and scores as trace_ratio_update given X·UV.
        g = torch.Generator().manual_seed(5)
        X = torch.randn(N, C, 7, generator=g, dtype=torch.float64).to(device)
        UV = (torch.randn(7, 2 * C, generator=g, dtype=torch.float64) * 0.1 / C).to(device)
        base = _update_args(N, C, device)
        step = [a.clone() if isinstance(a, torch.Tensor) else a for a in base]
        s_upd, b_upd = _op("trace_ratio_update")(base[0], base[1], X @ UV, *base[3:], sigma)
        s_step, b_step = torch.ops.fishermask_ext.trace_ratio_step(
            step[0], step[1], X, UV, *step[3:], sigma)
        torch.testing.assert_close(base[1], step[1], **tol(f64, terms=7 + 3 * C, magnitude=step[1]))
        torch.testing.assert_close(s_upd, s_step,
                                   **tol(f64, terms=greedy_terms(7, C), magnitude=s_step))
        assert int(b_upd) == int(b_step)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_factored_ops_opcheck(device, dtype):
    require_native(device, "factored_times")
    G, H, R = _factors(6, 3, 5, 4, dtype, device)
    D = 3 * 5 + 4
    M = torch.randn(D, 6, dtype=torch.float64, device=device)
    P0, F = _sym(D, device, 3), _sym(D, device, 4)
    for Rr in (R, None):
        Dd = D if Rr is not None else 15
        torch.library.opcheck(_op("factored_times"), (G, H, Rr, M[:Dd]))
        torch.library.opcheck(_op("factored_gram"), (G, H, Rr))
        torch.library.opcheck(_op("factored_init"), (G, H, Rr, P0[:Dd, :Dd], F[:Dd, :Dd], 0.5, 4))
    torch.library.opcheck(_op("trace_ratio_update"), (*_update_args(9, 3, device), 1.0, True))


@pytest.mark.parametrize("bad, match", [
    (lambda G, H, R, M: (G[:, :2], H, R, M), "G must be"),
    (lambda G, H, R, M: (G, H[:3], R, M), "H must be"),
    (lambda G, H, R, M: (G, H, R[:, :2], M), "R must be"),
    (lambda G, H, R, M: (G, H.double(), R, M), "one dtype"),
    (lambda G, H, R, M: (G, H, R, M[:-1]), "M must be"),
    (lambda G, H, R, M: (G, H, R, M.float()), "M must be float64"),
])
def test_factored_ops_reject_bad_arguments(bad, match):
    require_native("cpu", "factored_times")
    G, H, R = _factors(5, 3, 4, 2, torch.float32, "cpu")
    M = torch.zeros(14, 6, dtype=torch.float64)
    with pytest.raises(RuntimeError, match=match):
        _op("factored_times")(*bad(G, H, R, M))


def test_trace_ratio_update_rejects_bad_arguments():
    require_native("cpu", "trace_ratio_update")
    args = _update_args(5, 3, "cpu")
    with pytest.raises(RuntimeError, match="WZ must be"):
        _op("trace_ratio_update")(args[0], args[1], args[2][:, :, :5], *args[3:], 1.0)
    with pytest.raises(RuntimeError, match="C >= 1"):
        e = torch.empty(5, 0, 0, dtype=torch.float64)
        _op("trace_ratio_update")(e, e.clone(), torch.empty(5, 0, 0, dtype=torch.float64), 1.0,
                                  torch.empty(0, 0, dtype=torch.float64),
                                  torch.empty(0, 0, dtype=torch.float64), args[6], 1.0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("with_uv", [True, False])
def test_factored_step_matches_twin_and_dense_step(device, dtype, shape, with_uv):
    """The fused factored step == its twin == trace_ratio_step on the dense matrix."""
    require_native(device, "factored_step")
    n, C, d, Dr = shape
    G, H, R = _factors(*shape, dtype, device)
    base = _update_args(n, C, device, seed=3)
    UV = (torch.randn(C * d + Dr, 2 * C, dtype=torch.float64,
                      generator=torch.Generator().manual_seed(4)) * 0.3 / C).to(device)
    UV = UV if with_uv else None
    rest = (0.7, base[4], base[5], base[6], 1.0)
    runs = []
    for impl in (_op("factored_step"), reference.factored_step):
        A, B = base[0].clone(), base[1].clone()
        runs.append((impl(A, B, G, H, R, UV, *rest), A, B))
    A, B = base[0].clone(), base[1].clone()
    X = FactoredEmbeddings(G, H, R).dense(torch.float64)
    runs.append((torch.ops.fishermask_ext.trace_ratio_step(A, B, X, UV, *rest), A, B))
    (s0, b0), A0, B0 = runs[0]
    D, f64 = C * d + Dr, torch.float64
    for (s, b), A, B in runs[1:]:
        torch.testing.assert_close(A, A0, **tol(f64, terms=D + 3 * C, magnitude=A0))
        torch.testing.assert_close(B, B0, **tol(f64, terms=D + 3 * C, magnitude=B0))
        torch.testing.assert_close(s, s0, **tol(f64, terms=greedy_terms(D, C), magnitude=s0))
        assert int(b) == int(b0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_factored_step_opcheck_and_parity_rounding(device, dtype):
    require_native(device, "factored_step")
    G, H, R = _factors(9, 3, 5, 4, dtype, device)
    args = _update_args(9, 3, device)
    UV = torch.randn(19, 6, dtype=torch.float64, device=device) * 0.05
    for Rr, U in ((R, UV), (None, UV[:15]), (R, None)):
        torch.library.opcheck(_op("factored_step"),
                              (args[0], args[1], G, H, Rr, U, 0.7, args[4], args[5], args[6],
                               1.0, True))
    exact, _ = _op("factored_step")(args[0].clone(), args[1].clone(), G, H, R, UV, 0.7,
                                    args[4], args[5], args[6], -1.0)
    rounded, _ = _op("factored_step")(args[0].clone(), args[1].clone(), G, H, R, UV, 0.7,
                                      args[4], args[5], args[6], -1.0, True)
    assert torch.equal(rounded, exact.float().double())


@pytest.mark.parametrize("shape", [(0, 3, 4, 2), (50, 3, 4, 2), (4000, 10, 2000, 0)], ids=str)
def test_factored_step_composite_matches_twin(shape):
    """The CompositeExplicitAutograd factored_step (what CUDA runs: factored_times, then
    trace_ratio_update, a chunk at a time; the last shape spans two 64 MB chunks) == the twin."""
    require_native("cpu", "factored_step")
    n, C, d, Dr = shape
    G, H, R = _factors(*shape, torch.float32, "cpu", seed=7)
    base = _update_args(n, C, "cpu", seed=8)
    UV = torch.randn(C * d + Dr, 2 * C, dtype=torch.float64,
                     generator=torch.Generator().manual_seed(9)) * 0.3 / (C * d) ** 0.5
    keys = torch._C.DispatchKeySet(torch._C.DispatchKey.CompositeExplicitAutograd)
    rest = (0.7, base[4], base[5], base[6], 1.0, True)
    A1, B1, A2, B2 = base[0].clone(), base[1].clone(), base[0].clone(), base[1].clone()
    got = _op("factored_step").redispatch(keys, A1, B1, G, H, R, UV, *rest)
    want = reference.factored_step(A2, B2, G, H, R, UV, *rest)
    D, f64 = C * d + Dr, torch.float64
    torch.testing.assert_close(got[0], want[0], **tol(f64, terms=greedy_terms(D, C),
                                                      magnitude=want[0]))
    torch.testing.assert_close(A1, A2, **tol(f64, terms=D + 3 * C, magnitude=A2))
    assert int(got[1]) == int(want[1])
