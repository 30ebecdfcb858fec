"""modAL: bait_query / fishermask_query inside a real ActiveLearner, three rounds on digits."""
import numpy as np
import pytest
pytest.importorskip("modAL", reason="needs modAL-python (the modal extra)")
from modAL.models import ActiveLearner  # noqa: E402
from sklearn.linear_model import LogisticRegression

from testing import check_picks
from fishermask_ext import select_batch
from fishermask_ext.adapters._embed import classifier_embeddings
from fishermask_ext.adapters.modal import RETURNS_METRICS, bait_query, fishermask_query

# What each query must equal: select_batch on the embeddings, the strategy's own options.
EXPECTED = {bait_query: dict(weighting="sqrt_p", lamb=0.01, backward_steps=1),
            fishermask_query: dict(weighting="sqrt_p", lamb=1.0, backward_steps=0)}


def _learner(strategy, X, y, labeled):
    # A new learner per round: modAL 0.4.2.1's teach() passes force_all_finite to
    # scikit-learn's check_X_y, which scikit-learn >= 1.8 no longer accepts; the constructor
    # fits without that check.
    return ActiveLearner(LogisticRegression(max_iter=300), query_strategy=strategy,
                         X_training=X[labeled], y_training=y[labeled])


@pytest.mark.parametrize("strategy", [bait_query, fishermask_query])
def test_three_rounds(digits, strategy):
    X, y = digits
    labeled = np.zeros(len(X), bool)
    labeled[:20] = True
    for _ in range(3):
        learner = _learner(strategy, X, y, labeled)
        pool = np.flatnonzero(~labeled)
        idx, rows = learner.query(X[pool], n_instances=6)      # either modAL version
        opts = EXPECTED[strategy]
        emb = dict(weighting=opts["weighting"], factored="auto")      # the strategies' default
        want, want_gains = select_batch(
            classifier_embeddings(learner.estimator, X[pool], **emb), 6,
            labeled=classifier_embeddings(learner.estimator, X[labeled], **emb),
            lamb=opts["lamb"], backward_steps=opts["backward_steps"], return_gains=True)
        np.testing.assert_array_equal(idx, want)
        np.testing.assert_array_equal(rows, X[pool[idx]])
        if RETURNS_METRICS:              # modAL >= 0.4.2 hands the gains on as metrics
            np.testing.assert_array_equal(
                learner.query(X[pool], n_instances=6, return_metrics=True)[2], want_gains)
        check_picks(pool[idx], labeled, 6)
        labeled[pool[idx]] = True


def test_deterministic_and_options(digits):
    X, y = digits
    labeled = np.arange(len(X)) < 30
    learner = _learner(fishermask_query, X, y, labeled)
    a = learner.query(X[~labeled], n_instances=5, pct_top=0.3)[0]
    b = learner.query(X[~labeled], n_instances=5, pct_top=0.3)[0]
    np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="no option n_samples"):
        fishermask_query(learner, X[~labeled], 5, n_samples=3)
    with pytest.raises(ValueError, match="budget"):
        bait_query(learner, X[~labeled], 0)


def test_follows_the_installed_modal():
    """The result the installed modAL expects from a query strategy: (indices, metrics) where
    its query has return_metrics (0.4.2), the indices alone before (0.4.1)."""
    import inspect
    from modAL.models.base import BaseLearner
    assert RETURNS_METRICS == ("return_metrics" in inspect.signature(BaseLearner.query).parameters)
    X = np.random.default_rng(0).random((40, 4))
    y = np.arange(40) % 3
    learner = ActiveLearner(LogisticRegression(), query_strategy=bait_query,
                            X_training=X[:9], y_training=y[:9])
    out = bait_query(learner, X[9:], 2)      # 2: a bare index pair would also unpack in 0.4.2
    picks = out[0] if RETURNS_METRICS else out
    assert isinstance(out, tuple) == RETURNS_METRICS
    idx, rows = learner.query(X[9:], n_instances=2)
    np.testing.assert_array_equal(idx, picks)
    np.testing.assert_array_equal(rows, X[9:][picks])
