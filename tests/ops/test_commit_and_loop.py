"""The commit, the initialisation and the greedy loop ops: commit_direction (CPU kernel, generic
ATen kernel, twin), trace_ratio_init and greedy_select (opcheck, twin, torch.compile), the
Python loop over blocks (ops/loop.py) against the native loop, and the per-instruction-set CPU
kernels."""

import pytest
import torch

import fishermask_ext as fm
from fishermask_ext.ops import reference
from fishermask_ext.testing import greedy_terms, tol

from testing import DEVICES, DTYPES, require_native, run_under_narrower_isas


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
    f64 = torch.float64
    for uv, P in ((uv_cpu, P_cpu), (uv_gen, P_gen)):
        assert uv.shape == (D, 2 * C)       # P·x and F·P·x (2D terms), the C×C factors
        torch.testing.assert_close(uv, uv_ref, **tol(f64, terms=2 * D + 2 * C, magnitude=uv_ref))
        torch.testing.assert_close(P, P_ref, **tol(f64, terms=2 * D + 2 * C, magnitude=P_ref))
    assert not torch.equal(P_ref, args[0])               # P was updated


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_commit_direction(device):
    require_native(device, "commit_direction")
    for D, C in ((5, 2), (9, 1)):
        torch.library.opcheck(torch.ops.fishermask_ext.commit_direction,
                              tuple(_commit_args(D, C, device=device)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", [(5, 2, 3, 1, 1), (8, 3, 5, 3, 6), (4, 1, 7, 4, 4)], ids=str)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("round_scores", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_opcheck_greedy_select(dtype, case, device, round_scores, masked):
    require_native(device)
    N, C, D, K, n_forward = case
    X = torch.randn(N, C, D, dtype=dtype).to(device)
    F = fm.fisher_matrix(X)
    P0 = torch.eye(D, dtype=torch.float64, device=device) * 0.5
    cand = None
    if masked:          # the last row is never eligible; keep enough candidates
        cand = torch.ones(N, dtype=torch.bool, device=device)
        cand[-1] = n_forward == N
    args = (X, P0, F, 0.9, K, n_forward, 3, 2, round_scores, cand)
    torch.library.opcheck(torch.ops.fishermask_ext.greedy_select, args)
    picks, gains = torch.ops.fishermask_ext.greedy_select(*args)
    ref_picks, ref_gains = reference.greedy_select(*args)
    assert picks.tolist() == ref_picks.tolist()
    steps = 2 * n_forward - K                       # forward, then backward down to K
    torch.testing.assert_close(gains, ref_gains, **tol(torch.float64, magnitude=ref_gains,
                                                       terms=greedy_terms(D, C, steps)))
    if masked and n_forward < N:
        assert N - 1 not in picks.tolist()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("N", [0, 1, 7, 13])
def test_trace_ratio_init_opcheck_and_twin(dtype, device, N):
    require_native(device)
    C, D = 3, 5
    X = torch.randn(N, C, D, dtype=dtype).to(device)
    G = torch.randn(D, D, dtype=torch.float64)
    for P0 in (torch.eye(D, dtype=torch.float64) * 0.7, G @ G.T / D + torch.eye(D)):
        args = (X, P0.to(device), fm.fisher_matrix(X) + torch.eye(D, device=device), 0.8, 4, 2)
        torch.library.opcheck(torch.ops.fishermask_ext.trace_ratio_init, args)
        got = torch.ops.fishermask_ext.trace_ratio_init(*args)
        for g, r in zip(got, reference.trace_ratio_init(*args)):
            assert g.shape == (N, C, C)     # X·P·Xᵀ and X·P·F·P·Xᵀ: chains of 4D terms
            torch.testing.assert_close(g, r, **tol(torch.float64, terms=4 * D, magnitude=r))


@pytest.mark.parametrize("b", [0, 1])
def test_python_loop_over_blocks_equals_native_loop(b):
    """ops.loop over the native ops with the pool cut into uneven blocks picks exactly what the
    native loop picks on the whole tensor, gains included, and so does the twin loop."""
    require_native("cpu")
    from fishermask_ext.ops import loop
    from fishermask_ext.select.rows import Rows
    g = torch.Generator().manual_seed(3)
    X = torch.randn(41, 3, 9, generator=g, dtype=torch.float64)
    cand = torch.rand(41, generator=g) > 0.2
    F = fm.fisher_matrix(X)
    P0 = torch.eye(9, dtype=torch.float64) * 2.0
    args = (P0, F, 0.7, 6, 6 * (b + 1), 5, 4, False)
    want = torch.ops.fishermask_ext.greedy_select(X, *args, cand)
    cuts = [0, 1, 1, 17, 30, 41]                       # an empty block, a single row, ...
    blocks = [loop.Block(lambda s=s, e=e: X[s:e], s, e - s, cand[s:e])
              for s, e in zip(cuts, cuts[1:])]
    kernels = Rows(tensor=X).kernels("native")    # its chunk (not 5) does not change picks
    got = loop.greedy_loop(blocks, *args[:5], False, kernels=kernels)
    assert got[0].tolist() == want[0].tolist()
    steps = 2 * args[4] - args[3]                   # forward, then backward down to K
    torch.testing.assert_close(got[1], want[1], **tol(torch.float64, magnitude=want[1],
                                                      terms=greedy_terms(9, 3, steps)))
    assert all(cand[j] for j in got[0].tolist())


def test_greedy_select_under_torch_compile():
    require_native("cpu")
    X = torch.randn(10, 2, 4, dtype=torch.float64)
    F = fm.fisher_matrix(X)
    P0 = torch.eye(4, dtype=torch.float64)
    fn = torch.compile(
        lambda x: torch.ops.fishermask_ext.greedy_select(x, P0, F, 1.0, 3, 3, 4, 2)[0],
        fullgraph=True, backend="eager")
    assert fn(X).tolist() == reference.greedy_select(X, P0, F, 1.0, 3, 3, 4, 2)[0].tolist()


@pytest.mark.slow           # a subprocess per instruction set
def test_narrower_cpu_kernels_match_twin():
    """The CPU kernels are compiled per instruction set; run the narrowest one (and AVX2 on an
    AVX-512 machine) in a fresh process, where the choice is made, against the twin: the dense
    step and the factored one."""
    require_native("cpu", "trace_ratio_step")
    script = (
        "import torch, fishermask_ext as fm\n"
        "g = torch.Generator().manual_seed(0)\n"
        "for C in (1, 3, 10, 17):\n"
        "    X = torch.randn(21, C, 13, generator=g)\n"
        "    for b in (0, 1):\n"
        "        got = fm.select_batch(X, 6, lamb=0.1, backward_steps=b, backend='native')\n"
        "        ref = fm.select_batch(X, 6, lamb=0.1, backward_steps=b, backend='torch')\n"
        "        assert got.tolist() == ref.tolist(), (C, b)\n"
        "    E = fm.FactoredEmbeddings(torch.randn(23, C, C, generator=g),\n"
        "                              torch.randn(23, 9, generator=g),\n"
        "                              torch.randn(23, C, 5, generator=g))\n"
        "    got = fm.select_batch(E, 6, lamb=0.1, backend='native')\n"
        "    assert got.tolist() == fm.select_batch(E, 6, lamb=0.1, backend='torch').tolist(), C\n")
    run_under_narrower_isas(script)
