"""The linear-softmax Fisher embedding against autograd on a torch linear-softmax model."""
import numpy as np
import pytest
import torch

from fishermask_ext.adapters._embed import (classifier_embeddings, linear_softmax_embeddings,
                                            linear_softmax_fisher_diagonal, top_columns)
from fishermask_ext.testing import tol


def _autograd_rows(W, phi):
    """[N, C, C·F]: ∇_W log softmax(W φ_i)_c for every sample and class, one backward each."""
    W = W.clone().requires_grad_(True)
    rows = []
    for x in phi:
        logp = torch.log_softmax(W @ x, 0)
        rows.append(torch.stack([torch.autograd.grad(logp[c], W, retain_graph=True)[0].reshape(-1)
                                 for c in range(len(logp))]))
    return torch.stack(rows), torch.softmax(phi @ W.detach().T, 1)


@pytest.fixture
def model():
    g = torch.Generator().manual_seed(0)
    return torch.randn(4, 5, generator=g, dtype=torch.float64), \
        torch.randn(7, 5, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("weighting", ["sqrt_p", "none"])
def test_rows_are_the_gradients_of_log_p(model, weighting):
    W, phi = model
    grads, p = _autograd_rows(W, phi)
    want = grads * (p.sqrt()[:, :, None] if weighting == "sqrt_p" else 1)
    got = linear_softmax_embeddings(p.numpy(), phi.numpy(), weighting=weighting)
    assert got.shape == (7, 4, 20)
    # autograd: W·φ (5 terms), log-softmax over C = 4, the product; closed form: (e_c − p)·φ·√p
    bound = tol(torch.float64, terms=5 + 4 + 3, magnitude=want)
    np.testing.assert_allclose(got, want.numpy(), **bound)
    cols = [19, 0, 7]                  # any subset, in the order asked
    np.testing.assert_allclose(
        linear_softmax_embeddings(p.numpy(), phi.numpy(), weighting=weighting, columns=cols),
        want.numpy()[:, :, cols], **bound)


def test_fisher_diagonal_closed_form(model):
    W, phi = model
    grads, p = _autograd_rows(W, phi)
    want = (p[:, :, None] * grads ** 2).sum(1).mean(0)     # (1/N) Σ_i Σ_c p_c g_c²
    # twice a gradient's terms (a square), then Σ over C = 4 classes and N = 7 samples
    np.testing.assert_allclose(linear_softmax_fisher_diagonal(p.numpy(), phi.numpy()),
                               want.numpy(), **tol(torch.float64, terms=2 * 12 + 4 + 7,
                                                   magnitude=want))


def test_top_columns():
    diag = np.array([0.5, 3.0, 1.0, 3.0, 0.1])
    assert top_columns(diag, 0.4).tolist() == [1, 3]
    assert top_columns(diag, 0.6).tolist() == [1, 2, 3]
    assert top_columns(diag, 0.01).tolist() == [1]          # at least one, lower index on ties
    assert top_columns(diag, None).tolist() == [0, 1, 2, 3, 4]
    for bad, error in ((0, ValueError), (1.5, ValueError), ("0.1", TypeError), (True, TypeError)):
        with pytest.raises(error, match="pct_top must be a"):
            top_columns(diag, bad)


def test_classifier_embeddings_of_a_fitted_logistic_regression(digits):
    from sklearn.linear_model import LogisticRegression
    X, y = digits
    clf = LogisticRegression(fit_intercept=False, max_iter=300).fit(X, y)
    W = torch.as_tensor(clf.coef_)
    grads, p = _autograd_rows(W, torch.as_tensor(X[:5]))
    want = (grads * p.sqrt()[:, :, None]).numpy()     # W·x: 16 terms, softmax over 10 classes
    bound = tol(torch.float64, terms=16 + 10 + 3, magnitude=want)
    np.testing.assert_allclose(classifier_embeddings(clf, X[:5]), want, **bound)
    np.testing.assert_allclose(classifier_embeddings(clf, X[:5], transform=lambda a: 2 * a),
                               2 * classifier_embeddings(clf, X[:5]), **bound)


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="weighting"):
        linear_softmax_embeddings(np.ones((2, 2)) / 2, np.ones((2, 3)), weighting="p")
    with pytest.raises(ValueError, match="same N"):
        linear_softmax_embeddings(np.ones((2, 2)) / 2, np.ones((3, 3)))
    with pytest.raises(ValueError, match="finite"):
        linear_softmax_embeddings(np.full((2, 2), np.nan), np.ones((2, 3)))
    with pytest.raises(TypeError, match="predict_proba"):
        classifier_embeddings(object(), np.ones((2, 3)))
    with pytest.raises(TypeError, match="transform"):
        classifier_embeddings(type("M", (), {"predict_proba": None})(), np.ones((2, 3)),
                              transform=3)
