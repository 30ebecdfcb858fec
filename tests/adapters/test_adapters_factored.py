"""The adapters embed factored by default where the whole classifier is embedded (the sklearn
path's linear-softmax W, the torch strategies' masks): the same picks as dense rows, gains within
1e-9 relative; factored=False forces dense rows."""
import numpy as np
import pytest
import torch

LogisticRegression = pytest.importorskip(
    "sklearn.linear_model", reason="needs scikit-learn (the al extra)").LogisticRegression

from fishermask_ext import MLP, FactoredEmbeddings
from fishermask_ext.adapters._embed import linear_softmax_embeddings
from fishermask_ext.adapters._sklearn import sklearn_options, sklearn_select
from fishermask_ext.adapters._torch import torch_select


def test_linear_softmax_factors_are_the_rows():
    g = np.random.default_rng(0)
    p = g.dirichlet(np.ones(4), size=7)
    phi = g.standard_normal((7, 5))
    for weighting in ("sqrt_p", "none"):
        dense = linear_softmax_embeddings(p, phi, weighting=weighting)
        fac = linear_softmax_embeddings(p, phi, weighting=weighting, factored=True)
        assert isinstance(fac, FactoredEmbeddings) and fac.columns is None
        np.testing.assert_allclose(fac.dense().numpy(), dense, rtol=1e-15, atol=1e-16)
    cols = [19, 0, 7]
    assert isinstance(linear_softmax_embeddings(p, phi, columns=cols, factored="auto"),
                      np.ndarray)
    with pytest.raises(ValueError, match="factored=True needs every entry of W"):
        linear_softmax_embeddings(p, phi, columns=cols, factored=True)


@pytest.mark.parametrize("kind", ["bait", "fishermask"])
def test_sklearn_factored_same_picks(digits, kind):
    X, y = digits
    clf = LogisticRegression(max_iter=300).fit(X[:30], y[:30])
    got = sklearn_select(kind, clf, X[30:], X[:30], 6, sklearn_options(kind, {}))
    want = sklearn_select(kind, clf, X[30:], X[:30], 6, sklearn_options(kind, {"factored": False}))
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_allclose(got[1], want[1], rtol=1e-9, atol=0)
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
    np.testing.assert_allclose(got[1], want[1], rtol=1e-9, atol=0)
