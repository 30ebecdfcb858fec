"""select_batch: native op == PyTorch twin == the direct formula of docs/ALGORITHM.md step E."""
import pytest
import torch

import fishermask_ext as fm
from fishermask_ext.testing import direct_select, tol

from testing import DEVICES, require_native


CASES = [  # N, C, D, K, lamb, n_L, backward_steps
    (12, 3, 5, 4, 1.0, 0, 0),
    (20, 1, 6, 5, 0.5, 0, 1),       # C = 1
    (9, 4, 7, 9, 1.0, 0, 0),        # K = N
    (9, 2, 5, 8, 1.0, 3, 1),        # (b+1)K > N: forward stops at N
    (25, 3, 8, 6, 0.01, 7, 1),      # BAIT's λ, labeled points, pruning
    (11, 2, 31, 3, 2.0, 4, 0),      # D > N·C
    (17, 5, 13, 7, 1.0, 0, 2),
    (10, 3, 530, 4, 0.5, 5, 1),     # D over one column block of the triangular products
    (70, 11, 45, 10, 1.0, 0, 1),    # C > 8, several 8-candidate groups with a short last one
    (40, 12, 21, 5, 0.3, 6, 0),
]


def _data(N, C, D, n_L, dtype=torch.float64, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(N, C, D, generator=g, dtype=torch.float64)
    L = torch.randn(n_L, C, D, generator=g, dtype=torch.float64) if n_L else None
    X, L = X.to(device, dtype), None if L is None else L.to(device, dtype)
    return X, L


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_native_twin_direct_agree_float64(case, device):
    N, C, D, K, lamb, n_L, b = case
    X, L = _data(N, C, D, n_L, device=device)
    expected = direct_select(X.cpu(), K, None if L is None else L.cpu(), lamb, b)
    twin = fm.select_batch(X, K, labeled=L, lamb=lamb, backward_steps=b, backend="torch")
    assert twin.tolist() == expected
    require_native(device)
    native = fm.select_batch(X, K, labeled=L, lamb=lamb, backward_steps=b, backend="native")
    assert native.dtype == torch.long and native.device.type == device
    assert native.tolist() == expected


def test_backward_pruning_changes_picks():
    # Guards against pruning being a no-op: with b = 1 the kept set differs from plain forward.
    X, _ = _data(30, 3, 6, 0, seed=3)
    assert direct_select(X, 5, backward_steps=1) != direct_select(X, 5)
    assert fm.select_batch(X, 5, backward_steps=1).tolist() == direct_select(X, 5, backward_steps=1)


# float32 is storage: picks equal float64 picks of the same values, also far past K·C = D,
# where the incremental updates cancel (A_i, B_i shrink by orders of magnitude) and float32
# arithmetic loses the argmax. N = 120, C = 3, D = 20: K·C = 12 (< D), 42 (2D) and 102 (5D).
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("K", [4, 14, 34])
@pytest.mark.parametrize("lamb", [1.0, 0.01])
@pytest.mark.parametrize("n_L", [0, 5])
@pytest.mark.parametrize("b", [0, 1])
def test_float32_picks_equal_float64_picks(device, K, lamb, n_L, b):
    X, L = _data(120, 3, 20, n_L, seed=K + n_L)
    X = X.float().double()                 # values a float32 tensor holds exactly
    L = None if L is None else L.float().double()
    expected, gaps = direct_select(X, K, L, lamb, b, return_gaps=True)
    assert min(gaps) > 1e-9, "a near-tie: the comparison would test rounding, not exactness"
    for backend in ("torch", "native"):
        if backend == "native":
            require_native(device)
        for dtype in (torch.float64, torch.float32):
            got = fm.select_batch(X.to(device, dtype), K, lamb=lamb, backward_steps=b,
                                  labeled=None if L is None else L.to(device, dtype),
                                  backend=backend)
            assert got.tolist() == expected, (backend, dtype)


@pytest.mark.parametrize("device", DEVICES)
def test_picks_do_not_follow_the_tf32_flag(device):
    """Selection has no float32 product for TF32 to take over: a global allow_tf32 changes
    nothing (on CUDA it would otherwise round float32 GEMM inputs to 10 mantissa bits)."""
    X, L = _data(120, 3, 20, 5, seed=7)
    X, L = X.float().to(device), L.float().to(device)
    before = fm.select_batch(X, 34, labeled=L, lamb=0.01).tolist()
    flag = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        assert fm.select_batch(X, 34, labeled=L, lamb=0.01).tolist() == before
    finally:
        torch.backends.cuda.matmul.allow_tf32 = flag


def test_labeled_fisher_equals_labeled():
    X, L = _data(20, 3, 6, 5, seed=2)
    a = fm.select_batch(X, 4, labeled=L)
    F_L = fm.fisher_matrix(L)
    F = (fm.fisher_matrix(X) * 20 + F_L * 5) / 25
    b = fm.select_batch(X, 4, labeled_fisher=F_L, n_labeled=5, pool_fisher=F)
    assert a.tolist() == b.tolist()


@pytest.mark.parametrize("D", [4, 385, 800])
def test_fisher_matrix_is_mean_outer_product(D):
    X, _ = _data(7, 3, D, 0)
    want = sum(X[i].T @ X[i] for i in range(7)) / 7
    bound = tol(torch.float64, terms=7 * 3 + 1, magnitude=want)     # Σ over n·C rows, then / n
    torch.testing.assert_close(fm.fisher_matrix(X), want, **bound)
    # float32 input, float64 arithmetic: as exact as float64 on the values float32 holds.
    X32 = X.float()
    want32 = sum(X32[i].double().T @ X32[i].double() for i in range(7)) / 7
    torch.testing.assert_close(fm.fisher_matrix(X32), want32, **bound)
    assert fm.fisher_matrix(X[:0]).abs().sum() == 0


def test_identity_pool_fisher_is_a_optimal_design():
    X, _ = _data(15, 2, 5, 0, seed=4)
    eye = torch.eye(5, dtype=torch.float64)
    assert fm.select_batch(X, 4, pool_fisher=eye).tolist() == direct_select(X, 4, F=eye)


@pytest.mark.parametrize("backend", ["torch", "native"])
def test_inputs_are_not_modified(backend):
    if backend == "native":
        require_native("cpu")
    X, L = _data(10, 2, 4, 3)
    X0, L0 = X.clone(), L.clone()
    fm.select_batch(X, 3, labeled=L, backward_steps=1, backend=backend)
    assert torch.equal(X, X0) and torch.equal(L, L0)


def test_non_contiguous_input():
    X, _ = _data(10, 4, 6, 0)
    Xt = X.transpose(1, 2).contiguous().transpose(1, 2)
    assert not Xt.is_contiguous()
    assert fm.select_batch(Xt, 3).tolist() == direct_select(X, 3)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backward_steps", [0, 1])
def test_parity_rounds_scores_before_the_argmax(device, backward_steps):
    # Candidate 7 is candidate 2 scaled by 1 + 1e-10: a higher float64 score, the same float32
    # one. Exact scores pick 7 first; rounded ones tie and go to the lower index, 2.
    X, _ = _data(12, 2, 5, 0, seed=4)
    X[2] *= 3.0
    X[7] = X[2] * (1 + 1e-10)
    exact = direct_select(X, 4, backward_steps=backward_steps)
    rounded = direct_select(X, 4, backward_steps=backward_steps, round_scores=True)
    assert exact != rounded
    if backward_steps == 0:
        assert exact[0] == 7 and rounded[0] == 2
    for backend in ("torch", "native"):
        if backend == "native":
            require_native(device)
        got = fm.select_batch(X.to(device), 4, backward_steps=backward_steps, backend=backend,
                              parity=True)
        assert got.tolist() == rounded
        assert fm.select_batch(X.to(device), 4, backward_steps=backward_steps,
                               backend=backend).tolist() == exact


def test_parity_must_be_bool():
    with pytest.raises(TypeError, match="parity must be True or False"):
        fm.select_batch(torch.randn(4, 2, 3), 2, parity=1)


def test_float32_picks_equal_float64_picks_across_tiles():
    """As above with D = 130, past one 128-column tile of the AVX-512 float32 product
    (csrc/cpu/rows_times.h), at K·C = 5.1·D and BAIT's λ."""
    X, _ = _data(260, 3, 130, 0, seed=3)
    X = X.float().double()
    expected, gaps = direct_select(X, 220, None, 0.01, 0, return_gaps=True)
    assert min(gaps) > 1e-9, "a near-tie: the comparison would test rounding, not exactness"
    require_native("cpu")
    for dtype in (torch.float64, torch.float32):
        assert fm.select_batch(X.to(dtype), 220, lamb=0.01).tolist() == expected, dtype
