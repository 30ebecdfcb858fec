"""FactoredEmbeddings: the type (shape, rows, dense, checks) and selection through it, which
picks exactly what selection on the dense matrix picks."""
import pytest
import torch

import fishermask_ext as fm
from fishermask_ext import FactoredEmbeddings
from fishermask_ext.testing import gains_tol, greedy_terms, tol


def _random(N, C, d, Dr, dtype=torch.float64, seed=0, columns=False):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).to(dtype)
    D = C * d + Dr
    cols = torch.randperm(D, generator=g) if columns else None
    return FactoredEmbeddings(r(N, C, C), r(N, d), r(N, C, Dr) if Dr else None, columns=cols)


def test_shape_dtype_and_dense_identity():
    E = _random(4, 3, 5, 2)
    assert E.shape == (4, 3, 17) and E.dtype == torch.float64 and len(E) == 4
    X = E.dense()
    i, c, k, m = 2, 1, 2, 3           # X_i[c, k·d̄ + m] = G_i[c, k]·h̄_i[m]; then R's columns
    assert X[i, c, k * 5 + m] == E.G[i, c, k] * E.H[i, m]
    assert torch.equal(X[:, :, 15:], E.R)
    P = _random(4, 3, 5, 2, columns=True)
    assert torch.equal(P.dense()[:, :, P.columns], P.natural())


@pytest.mark.parametrize("idx", [1, -1, slice(1, 3), [3, 0], torch.tensor([2, 2]),
                                 torch.tensor([True, False, True, True])], ids=str)
def test_row_selection_stays_factored(idx):
    E = _random(4, 3, 5, 2, columns=True)
    sub = E[idx]
    assert isinstance(sub, FactoredEmbeddings)
    want = E.dense()[idx]
    assert torch.equal(sub.dense(), want if want.dim() == 3 else want[None])


@pytest.mark.parametrize("make, error, match", [
    (lambda: FactoredEmbeddings(torch.zeros(3, 2, 3), torch.zeros(3, 4)), ValueError,
     r"G must be \[N, C, C\]"),
    (lambda: FactoredEmbeddings(torch.zeros(3, 2, 2), torch.zeros(4, 4)), ValueError,
     r"H must be \[N, d̄\] = \[3, d̄\]"),
    (lambda: FactoredEmbeddings(torch.zeros(3, 2, 2), torch.zeros(3, 4), torch.zeros(3, 3, 1)),
     ValueError, r"R must be \[N, C, D_r\] = \[3, 2, D_r\]"),
    (lambda: FactoredEmbeddings(torch.zeros(3, 2, 2), torch.zeros(3, 4, dtype=torch.float64)),
     TypeError, "H is torch.float64 but G is torch.float32"),
    (lambda: FactoredEmbeddings(torch.zeros(3, 2, 2, dtype=torch.int64), torch.zeros(3, 4)),
     TypeError, "G must be float32 or float64"),
    (lambda: FactoredEmbeddings(torch.zeros(3, 2, 2), [[0.0]]), TypeError, "H must be a torch"),
    (lambda: FactoredEmbeddings(torch.zeros(3, 2, 2), torch.zeros(3, 4), columns=[0] * 8),
     ValueError, "columns must be a permutation"),
    (lambda: FactoredEmbeddings(torch.zeros(3, 2, 2), torch.zeros(3, 0), torch.zeros(3, 2, 5)),
     ValueError, "H has d̄ = 0 columns"),
    (lambda: FactoredEmbeddings(torch.zeros(3, 2, 2), torch.zeros(3, 4))[3], IndexError,
     "row 3 is out of range for 3 rows"),
])
def test_bad_factors_are_named(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("factor", ["G", "H", "R"])
def test_nan_in_a_factor_names_it_and_the_rows(factor):
    E = _random(30, 3, 4, 2)
    getattr(E, factor)[[7, 21]] = float("nan")
    with pytest.raises(ValueError, match=rf"unlabeled \(factor {factor}\) contains NaN or Inf "
                                         rf"\(first bad rows: \[7, 21\]\)"):
        fm.select_batch(E, 3)


def _both(E, K, **kw):
    """(dense picks and gains, factored picks and gains, their tol) of the same selection."""
    dense_kw = {k: (v.dense() if isinstance(v, FactoredEmbeddings) else v) for k, v in kw.items()}
    dense = fm.select_batch(E.dense(), K, return_gains=True, **dense_kw)
    twin = fm.select_batch(E.dense(), K, return_gains=True, backend="torch", **dense_kw)
    steps = K * (2 * kw.get("backward_steps", 0) + 1)     # forward K·(b + 1), backward to K
    bound = gains_tol(dense[1], twin[1], D=E.shape[2], C=E.shape[1], steps=steps)
    return dense, fm.select_batch(E, K, return_gains=True, **kw), bound


def _same(a, b, bound):
    """Same picks; gains within `bound` (a gains_tol)."""
    assert a[0].tolist() == b[0].tolist()
    torch.testing.assert_close(b[1], a[1], **bound)


# K·C up to 5·D: (N, C, d̄, D_r, K) with D = C·d̄ + D_r.
@pytest.mark.parametrize("N, C, d, Dr, K", [(120, 3, 4, 3, 25), (90, 4, 3, 0, 9),
                                            (200, 10, 2, 4, 10)], ids=str)
@pytest.mark.parametrize("b", [0, 1])
@pytest.mark.parametrize("lamb", [1.0, 0.01])
@pytest.mark.parametrize("labeled", [False, True])
def test_factored_picks_equal_dense_picks(N, C, d, Dr, K, b, lamb, labeled):
    E = _random(N, C, d, Dr, seed=N + b, columns=True)
    kw = dict(backward_steps=b, lamb=lamb)
    if labeled:
        U, L = E[20:], E[:20]
        _same(*_both(U, K, labeled=L, **kw))
    else:
        _same(*_both(E, K, **kw))


def test_labeled_fisher_and_pool_fisher_in_dense_order():
    """Matrices the caller passes are in the dense column order, whatever the factored one."""
    E = _random(80, 3, 4, 2, columns=True)
    X = E.dense()
    F_L = fm.fisher_matrix(X[:10])
    torch.testing.assert_close(fm.fisher_matrix(E[:10]), F_L,     # Σ over n·C rows, then / n
                               **tol(torch.float64, terms=10 * 3 + 1, magnitude=F_L))
    kw = dict(labeled_fisher=F_L, n_labeled=10, pool_fisher=fm.fisher_matrix(X))
    _same(*_both(E[10:], 6, **kw))


def test_select_from_pool_and_mixed_labeled_kinds():
    E = _random(60, 3, 4, 2, columns=True)
    mask = torch.zeros(60, dtype=torch.bool)
    mask[::7] = True
    bound = _both(E[~mask], 5, labeled=E[mask])[2]
    _same(fm.select_from_pool(E.dense(), 5, mask, return_gains=True),
          fm.select_from_pool(E, 5, mask, return_gains=True), bound)
    # factored candidates with dense labeled points: the same F_L
    _same(fm.select_batch(E[~mask], 5, labeled=E[mask].dense(), return_gains=True),
          fm.select_batch(E[~mask], 5, labeled=E[mask], return_gains=True), bound)


def test_float32_factored_equals_float64_factored_and_dense():
    """float32 is storage: float32 factors pick what float64 factors and the float64 dense
    matrix pick, also past K·C = 5·D at λ = 0.01, where float32 arithmetic would lose the
    argmax (docs/ALGORITHM.md, "Precision")."""
    E = _random(150, 4, 6, 3, dtype=torch.float32, columns=True)      # D = 27
    K = 35                                                            # K·C = 140 > 5·D
    kw = dict(lamb=0.01, backward_steps=1, return_gains=True)
    a = fm.select_batch(E, K, **kw)
    b = fm.select_batch(E.to(torch.float64), K, **kw)
    c = fm.select_batch(E.dense(torch.float64), K, **kw)
    assert a[0].tolist() == b[0].tolist() == c[0].tolist()
    # a and b: one factored loop on the same values (float32 ones convert exactly): the same
    # arithmetic up to its blocking, whatever the conditioning (condition 1).
    torch.testing.assert_close(a[1], b[1], **tol(torch.float64, terms=greedy_terms(27, 4, 3 * K),
                                                 magnitude=b[1]))


@pytest.mark.parametrize("backend", ["native", "torch"])
def test_native_and_twin_factored_loops_agree(backend):
    from testing import require_native
    if backend == "native":
        require_native("cpu", "trace_ratio_update")
    E = _random(70, 3, 5, 2)
    dense, _, bound = _both(E, 8)
    _same(dense, fm.select_batch(E, 8, return_gains=True, backend=backend), bound)


def test_the_plan_states_its_engine():
    from fishermask_ext.select.core import check_options, make_plan
    from fishermask_ext.select.checks import check_embeddings
    opts = check_options(1.0, 0, False, False, False, "auto")
    E = _random(10, 2, 3, 1)
    plan = make_plan(check_embeddings(E, "x"), 3, available=10, what="candidates", opts=opts)
    assert plan.engine == "python loop" and "factored" in plan.why and "factored" in str(plan)
    with_bar = dict(opts, progress=True)
    plan = make_plan(check_embeddings(E.dense(), "x"), 3, available=10, what="candidates",
                     opts=with_bar)
    assert plan.engine == "python loop" and "progress" in plan.why
    # ... and the bar's loop picks what the native loop picks.
    assert fm.select_batch(E.dense(), 4, progress=True).tolist() == \
        fm.select_batch(E.dense(), 4).tolist()
