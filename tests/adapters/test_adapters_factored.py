"""The adapters embed factored by default where the whole classifier is embedded (the sklearn
path's linear-softmax W, the torch strategies' masks): the same picks as dense rows, gains within
tol; factored=False forces dense rows."""
import numpy as np
import pytest
import torch

LogisticRegression = pytest.importorskip(
    "sklearn.linear_model", reason="needs scikit-learn (the al extra)").LogisticRegression

from fishermask_ext import MLP, FactoredEmbeddings
from fishermask_ext.adapters._embed import linear_softmax_embeddings
from fishermask_ext.adapters._sklearn import sklearn_options, sklearn_select
from fishermask_ext.adapters._torch import torch_select
from fishermask_ext.testing import greedy_terms, tol


def test_linear_softmax_factors_are_the_rows():
    g = np.random.default_rng(0)
    p = g.dirichlet(np.ones(4), size=7)
    phi = g.standard_normal((7, 5))
    for weighting in ("sqrt_p", "none"):
        dense = linear_softmax_embeddings(p, phi, weighting=weighting)
        fac = linear_softmax_embeddings(p, phi, weighting=weighting, factored=True)
        assert isinstance(fac, FactoredEmbeddings) and fac.columns is None
        np.testing.assert_allclose(fac.dense().numpy(), dense,     # one product, rounded once
                                   **tol(torch.float64, magnitude=torch.as_tensor(dense)))
    cols = [19, 0, 7]
    assert isinstance(linear_softmax_embeddings(p, phi, columns=cols, factored="auto"),
                      np.ndarray)
    with pytest.raises(ValueError, match="factored=True needs every entry of W"):
        linear_softmax_embeddings(p, phi, columns=cols, factored=True)



def _assert_gains(got, want, D, C=10, K=6):
    """Gains of K picks over C classes and at most D columns, both defaults (bait: one backward
    step, so at most 3K steps), within tol."""
    want = torch.as_tensor(want)
    np.testing.assert_allclose(got, want.numpy(), **tol(
        torch.float64, terms=greedy_terms(D, C, steps=3 * K), magnitude=want))

@pytest.mark.parametrize("kind", ["bait", "fishermask"])
def test_sklearn_factored_same_picks(digits, kind):
    X, y = digits
    clf = LogisticRegression(max_iter=300).fit(X[:30], y[:30])
    got = sklearn_select(kind, clf, X[30:], X[:30], 6, sklearn_options(kind, {}))
    want = sklearn_select(kind, clf, X[30:], X[:30], 6, sklearn_options(kind, {"factored": False}))
    np.testing.assert_array_equal(got[0], want[0])
    _assert_gains(got[1], want[1], D=17 * 10)     # W and the intercept of 10 classes
    assert isinstance(got[0], np.ndarray) and isinstance(got[1], np.ndarray)


@pytest.mark.parametrize("kind", ["bait", "fishermask"])
def test_torch_adapters_factored_same_picks(digits, kind):
    X, _ = digits
    torch.manual_seed(0)
    model = MLP(in_features=16, num_classes=10, hidden=(12,)).double()
    data, labeled = torch.as_tensor(X[:60]), np.arange(60) < 15
    got = torch_select(kind, model, data, labeled, 5, {})
    want = torch_select(kind, model, data, labeled, 5, {"factored": False})
    np.testing.assert_array_equal(got[0], want[0])
    _assert_gains(got[1], want[1], D=16 * 12 + 12 + 12 * 10 + 10, K=5)  # at most every weight
