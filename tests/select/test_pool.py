"""select_from_pool (the pool read in place with a labeled mask), the gains, the progress bar,
numpy in and out, and embedding-store-like sources read chunk by chunk."""
import numpy as np
import pytest
import torch

import fishermask_ext as fm
from fishermask_ext.ops.sizes import chunk_rows

from fishermask_ext.testing import DTYPES, greedy_terms, tol


def _pool(N=90, C=3, D=11, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(N, C, D, generator=g, dtype=dtype)
    mask = torch.rand(N, generator=g) < 0.3
    return X, mask


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("b", [0, 1])
@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_pool_equals_select_batch_on_the_split(dtype, b, backend):
    X, mask = _pool(dtype=dtype)
    idx = (~mask).nonzero().flatten()
    want, want_gains = fm.select_batch(X[idx], 8, labeled=X[mask], lamb=0.1, backward_steps=b,
                                       backend=backend, return_gains=True)
    got, gains = fm.select_from_pool(X, 8, mask, lamb=0.1, backward_steps=b, backend=backend,
                                     return_gains=True)
    assert got.tolist() == idx[want].tolist()
    assert not mask[got].any() and len(set(got.tolist())) == 8
    steps = 8 * (2 * b + 1)                # forward 8·(b + 1), then backward down to 8
    torch.testing.assert_close(gains, want_gains, **tol(torch.float64, magnitude=want_gains,
                                                        terms=greedy_terms(11, 3, steps)))


def test_pool_with_given_labeled_fisher_and_pool_fisher():
    X, mask = _pool(seed=1)
    idx = (~mask).nonzero().flatten()
    zero = torch.zeros(11, 11, dtype=torch.float64)
    F = fm.fisher_matrix(X)
    opts = dict(labeled_fisher=zero, n_labeled=int(mask.sum()), pool_fisher=F, lamb=0.5)
    want = fm.select_batch(X[idx], 5, **opts)
    assert fm.select_from_pool(X, 5, mask, **opts).tolist() == idx[want].tolist()


def test_gains_are_the_trace_ratio_decrease():
    """gain k = tr(M_{k-1}⁻¹F) - tr(M_k⁻¹F) for the greedy's M after k picks, computed directly:
    a difference of traces, so its error scales with the traces (magnitude) and with κ(M)."""
    X, _ = _pool(N=30, seed=2)
    K, lamb = 4, 0.3
    picks, gains = fm.select_batch(X, K, lamb=lamb, return_gains=True)
    F = fm.fisher_matrix(X)
    M = lamb * torch.eye(11, dtype=torch.float64)
    before = torch.trace(torch.linalg.solve(M, F))
    for j, gain in zip(picks.tolist(), gains.tolist()):
        M = M + X[j].T @ X[j]          # scale sqrt(K/(0+K)) = 1 without labeled points
        after = torch.trace(torch.linalg.solve(M, F))
        bound = tol(torch.float64, terms=greedy_terms(11, 3, K), magnitude=before,
                    condition=float(torch.linalg.cond(M)))
        torch.testing.assert_close(torch.tensor(gain, dtype=torch.float64), before - after,
                                   **bound)
        before = after


def test_numpy_in_numpy_out():
    X, mask = _pool(seed=3)
    got = fm.select_batch(X.numpy(), 6, lamb=0.2)
    assert isinstance(got, np.ndarray) and got.dtype == np.int64
    assert got.tolist() == fm.select_batch(X, 6, lamb=0.2).tolist()
    picks, gains = fm.select_from_pool(X.numpy(), 6, mask.numpy(), return_gains=True)
    assert isinstance(picks, np.ndarray) and isinstance(gains, np.ndarray)
    assert gains.dtype == np.float64 and gains.shape == (6,)
    assert picks.tolist() == fm.select_from_pool(X, 6, mask).tolist()


class _Store:
    """The reader protocol of an embedding store, over a tensor, counting what it reads."""
    def __init__(self, X):
        self.X, self.shape, self.dtype, self.reads = X, tuple(X.shape), X.dtype, []

    def read_rows(self, start, stop):
        self.reads.append(stop - start)
        return self.X[start:stop].clone()


def test_store_source_read_chunk_by_chunk(monkeypatch):
    import fishermask_ext.select.rows as rows_mod
    X, mask = _pool(N=70, seed=4, dtype=torch.float32)
    monkeypatch.setattr(rows_mod, "chunk_rows", lambda C, D: 16)     # several blocks
    store = _Store(X)
    got = fm.select_from_pool(store, 7, mask, lamb=0.1, backward_steps=1)
    assert got.tolist() == fm.select_from_pool(X, 7, mask, lamb=0.1, backward_steps=1).tolist()
    assert max(store.reads) <= chunk_rows(3, 11) and max(store.reads) <= 16
    assert fm.select_batch(store, 5).tolist() == fm.select_batch(X, 5).tolist()


def test_progress_bar_counts_every_commit(capsys):
    pytest.importorskip("tqdm")
    X, _ = _pool(seed=5)
    plain = fm.select_batch(X, 5, backward_steps=1)
    assert fm.select_batch(X, 5, backward_steps=1, progress=True).tolist() == plain.tolist()
    err = capsys.readouterr().err
    assert "15/15" in err        # 10 forward picks and 5 removals


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(labeled_mask=torch.zeros(5, dtype=torch.bool)), ValueError, r"shape \[N\] = \[90\]"),
    (dict(labeled_mask=torch.zeros(90)), TypeError, "must be bool"),
    (dict(labeled_mask="abc"), TypeError, "labeled_mask must be"),
    (dict(labeled_mask=torch.ones(90, dtype=torch.bool)), ValueError, "every one of the 90"),
    (dict(budget=80), ValueError, "unlabeled points of the pool"),
    (dict(budget=0), ValueError, "between 1 and"),
    (dict(progress=1), TypeError, "progress must be True or False"),
    (dict(return_gains="yes"), TypeError, "return_gains must be True or False"),
    (dict(pool_emb=[[1.0]]), TypeError, "pool_emb must be a torch.Tensor or numpy array"),
    (dict(pool_emb=np.zeros((90, 3, 11), dtype=np.int64)), TypeError, "float32 or float64"),
])
def test_pool_bad_input(kwargs, error, match):
    X, mask = _pool()
    args = dict(pool_emb=X, budget=5, labeled_mask=mask)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        fm.select_from_pool(args.pop("pool_emb"), args.pop("budget"), args.pop("labeled_mask"),
                            **args)


def test_pool_nan_in_labeled_row_is_named():
    X, mask = _pool()
    j = int(mask.nonzero()[0])
    X[j, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=rf"NaN or Inf \(first bad rows: \[{j}"):
        fm.select_from_pool(X, 5, mask)


def test_row_range_reads_only_its_rows():
    from fishermask_ext.select.rows import RowRange
    X, _ = _pool(N=40, seed=6)
    store = _Store(X)
    part = RowRange(store, 10, 31)
    assert part.shape == (21, 3, 11)
    assert fm.select_batch(part, 4).tolist() == fm.select_batch(X[10:31], 4).tolist()
    with pytest.raises(ValueError, match="outside this range"):
        part.read_rows(0, 22)
    with pytest.raises(ValueError, match="outside the 40 rows"):
        RowRange(store, 30, 41)


def test_progress_none_follows_the_terminal(monkeypatch):
    """progress=None (what the strategies pass): no bar and the native loop off a terminal; on
    one, a delayed bar and the Python loop, which the plan states; the same picks either way."""
    import sys
    from fishermask_ext.select.checks import check_embeddings
    from fishermask_ext.select.core import check_options, make_plan
    X = torch.randn(30, 3, 5, dtype=torch.float64)
    rows = check_embeddings(X, "x")
    opts = check_options(1.0, 0, False, None, False, "auto")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    quiet = make_plan(rows, 4, available=30, what="candidates", opts=opts)
    picks = fm.select_batch(X, 4, progress=None)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    shown = make_plan(rows, 4, available=30, what="candidates", opts=opts)
    assert "progress bar" in shown.why and shown.engine == "python loop"
    if fm.native_available("cpu"):
        assert quiet.engine == "native loop"
    assert fm.select_batch(X, 4, progress=None).tolist() == picks.tolist()
