"""select_batch: native op == PyTorch twin == the direct formula of ALGORITHM.md step E."""
import math

import pytest
import torch

import fishermask_ext as fm

from testing import DEVICES, require_native


def direct_select(X, K, labeled=None, lamb=1.0, backward_steps=0, return_gaps=False, F=None,
                  round_scores=False):
    """Step E written out: A_i, B_i recomputed from scratch at every step (float64); with
    round_scores, scores are rounded to float32 before each argmax (parity mode)."""
    X = X.double()
    N, C, D = X.shape
    n_L = 0 if labeled is None else labeled.shape[0]
    flat = lambda E: E.reshape(-1, D)
    F_L = flat(labeled).T @ flat(labeled) / n_L if n_L else torch.zeros(D, D, dtype=X.dtype)
    allX = X if labeled is None else torch.cat([X, labeled.double()])
    F = flat(allX).T @ flat(allX) / allX.shape[0] if F is None else F
    M = lamb * torch.eye(D, dtype=X.dtype) + n_L / (n_L + K) * F_L
    Xt = X * math.sqrt(K / (n_L + K))
    I = torch.eye(C, dtype=X.dtype)
    picked, gaps = [], []

    def scores(sigma, cand):
        P = torch.linalg.inv(M)
        A = Xt[cand] @ P @ Xt[cand].mT
        B = Xt[cand] @ P @ F @ P @ Xt[cand].mT
        s = torch.linalg.solve(sigma * I + A, B).diagonal(dim1=-2, dim2=-1).sum(-1)
        return s.float().double() if round_scores else s

    for _ in range(min((backward_steps + 1) * K, N)):
        cand = [i for i in range(N) if i not in picked]
        s = scores(1.0, cand)
        top = torch.topk(s, min(2, len(cand))).values
        gaps.append(float((top[0] - top[-1]) / top[0].abs()) if len(cand) > 1 else math.inf)
        j = cand[int(s.argmax())]
        picked.append(j)
        M = M + Xt[j].T @ Xt[j]
    while len(picked) > K:
        j = picked[int(scores(-1.0, picked).argmax())]
        picked.remove(j)
        M = M - Xt[j].T @ Xt[j]
    return (picked, gaps) if return_gaps else picked


CASES = [  # N, C, D, K, lamb, n_L, backward_steps
    (12, 3, 5, 4, 1.0, 0, 0),
    (20, 1, 6, 5, 0.5, 0, 1),       # C = 1
    (9, 4, 7, 9, 1.0, 0, 0),        # K = N
    (9, 2, 5, 8, 1.0, 3, 1),        # (b+1)K > N: forward stops at N
    (25, 3, 8, 6, 0.01, 7, 1),      # BAIT's λ, labeled points, pruning
    (11, 2, 31, 3, 2.0, 4, 0),      # D > N·C
    (17, 5, 13, 7, 1.0, 0, 2),
    (12, 2, 300, 3, 1.0, 0, 0),     # D over one column block of the triangular products (f32)
    (10, 3, 530, 4, 0.5, 5, 1),     # ... and of float64's wider blocks
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


@pytest.mark.parametrize("device", DEVICES)
def test_float32_agrees_with_float64_on_separated_data(device):
    X, L = _data(60, 4, 10, 5, seed=1)
    picks, gaps = direct_select(X, 8, L, return_gaps=True)
    assert min(gaps) > 1e-4, "test data must be well separated for this comparison"
    for backend in ("torch", "native"):
        if backend == "native":
            require_native(device)
        got = fm.select_batch(X.float().to(device), 8, labeled=L.float().to(device),
                              backend=backend)
        assert got.tolist() == picks


def test_labeled_fisher_equals_labeled():
    X, L = _data(20, 3, 6, 5, seed=2)
    a = fm.select_batch(X, 4, labeled=L)
    F_L = fm.fisher_matrix(L)
    F = (fm.fisher_matrix(X) * 20 + F_L * 5) / 25
    b = fm.select_batch(X, 4, labeled_fisher=F_L, n_labeled=5, pool_fisher=F)
    assert a.tolist() == b.tolist()


@pytest.mark.parametrize("D", [4, 300, 513])
def test_fisher_matrix_is_mean_outer_product(D):
    X, _ = _data(7, 3, D, 0)
    want = sum(X[i].T @ X[i] for i in range(7)) / 7
    torch.testing.assert_close(fm.fisher_matrix(X), want)
    torch.testing.assert_close(fm.fisher_matrix(X.float()), want, rtol=1e-5, atol=1e-5)
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
