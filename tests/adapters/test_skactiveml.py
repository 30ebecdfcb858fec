"""scikit-activeml: Bait / FisherMask as SingleAnnotatorPoolQueryStrategy, three rounds on digits."""
import numpy as np
import pytest
import torch
pytest.importorskip("skactiveml", reason="needs scikit-activeml (the skactiveml extra)")
from skactiveml.base import SingleAnnotatorPoolQueryStrategy
from skactiveml.classifier import SklearnClassifier
from skactiveml.utils import MISSING_LABEL
from sklearn.linear_model import LogisticRegression

from testing import check_picks
from fishermask_ext import select_batch, select_from_pool
from fishermask_ext.adapters._embed import classifier_embeddings
from fishermask_ext.adapters.skactiveml import Bait, FisherMask
from fishermask_ext.testing import greedy_terms, tol

OPTIONS = {Bait: dict(weighting="sqrt_p", lamb=0.01, backward_steps=1),
           FisherMask: dict(weighting="sqrt_p", lamb=1.0, backward_steps=0)}


def _clf():
    return SklearnClassifier(LogisticRegression(max_iter=300), classes=np.arange(10))


@pytest.mark.parametrize("cls", [Bait, FisherMask])
def test_three_rounds(digits, cls):
    X, y_true = digits
    y = np.full(len(X), MISSING_LABEL)
    y[:20] = y_true[:20]
    qs = cls()
    assert isinstance(qs, SingleAnnotatorPoolQueryStrategy)
    for _ in range(3):
        labeled = ~np.isnan(y)
        idx, util = qs.query(X, y, _clf(), batch_size=5, return_utilities=True)
        fitted = _clf().fit(X, y)
        opts = OPTIONS[cls]
        want, gains = select_from_pool(classifier_embeddings(fitted, X, weighting=opts["weighting"]),
                                       5, labeled, lamb=opts["lamb"],
                                       backward_steps=opts["backward_steps"], return_gains=True)
        np.testing.assert_array_equal(idx, want)
        check_picks(idx, labeled, 5)
        assert util.shape == (5, len(X))
        np.testing.assert_array_equal(np.nanargmax(util, axis=1), idx)
        # The adapter sums the pool Fisher over candidates then labeled rows (select_batch),
        # select_from_pool in pool order: float64 rounding apart, the same gains (D = 17·10:
        # W and the intercept; at most 3·5 steps with one backward step).
        np.testing.assert_allclose(util[np.arange(5), idx], gains, **tol(
            torch.float64, terms=greedy_terms(17 * 10, 10, steps=15), magnitude=gains))
        assert np.isnan(util).sum() == 5 * (len(X) - 1)
        y[idx] = y_true[idx]


def test_candidates_as_indices_and_as_samples(digits):
    X, y_true = digits
    y = np.full(len(X), MISSING_LABEL)
    y[:20] = y_true[:20]
    fitted = _clf().fit(X, y)
    emb = lambda rows: classifier_embeddings(fitted, rows)          # noqa: E731
    cand = np.arange(10, 120)             # 10 of them are labeled: skipped
    idx, util = Bait().query(X, y, _clf(), candidates=cand, batch_size=4, return_utilities=True)
    want = select_batch(emb(X[20:120]), 4, labeled=emb(X[:20]), lamb=0.01, backward_steps=1)
    np.testing.assert_array_equal(idx, 20 + want)
    assert util.shape == (4, len(X))
    new = X[150:200]                      # samples given directly: indices into them
    idx, util = Bait().query(X[:150], y[:150], _clf(), candidates=new, batch_size=4,
                             return_utilities=True)
    np.testing.assert_array_equal(idx, select_batch(emb(new), 4, labeled=emb(X[:20]),
                                                    lamb=0.01, backward_steps=1))
    assert util.shape == (4, len(new))


def test_deterministic_options_and_errors(digits):
    X, y_true = digits
    y = np.full(len(X), MISSING_LABEL)
    y[:30] = y_true[:30]
    a = FisherMask(pct_top=0.25).query(X, y, _clf(), batch_size=5)
    b = FisherMask(pct_top=0.25, random_state=3).query(X, y, _clf(), batch_size=5)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, FisherMask().query(X, y, _clf(), batch_size=5))
    with pytest.raises(TypeError, match="no option n_samples"):
        Bait(n_samples=4)
    with pytest.raises(TypeError, match="clf"):
        Bait().query(X, y, LogisticRegression(), batch_size=2)
