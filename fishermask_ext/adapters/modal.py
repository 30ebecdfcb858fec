"""modAL query strategies: `ActiveLearner(estimator, query_strategy=bait_query)`.

modAL (0.4) calls `query_strategy(learner, X_pool, *args, **kwargs)` and, when the result unpacks
into two, takes it as (indices into X_pool, metrics): both functions return (picks, gains), the
gains being each pick's trace-ratio decrease. The labeled set is the learner's own training data
(`learner.X_training`); the embedding is the linear-softmax Fisher embedding of the estimator's
`predict_proba` (fishermask_ext.adapters._embed: exact for multinomial logistic regression, a
last-layer approximation for other models). Options (lamb, backward_steps, weighting, transform,
pct_top for FisherMask, ...) go as keyword arguments of `learner.query(X_pool, n_instances=...,
lamb=...)`, or bind them with functools.partial.
"""
import modAL  # noqa: F401  (this module is importable only where modAL is)
import numpy as np

from ._sklearn import sklearn_options, sklearn_select

__all__ = ["bait_query", "fishermask_query"]


def _query(kind, classifier, X_pool, n_instances, options):
    opts = sklearn_options(kind, options)
    X_lab = getattr(classifier, "X_training", None)
    return sklearn_select(kind, classifier, np.asarray(X_pool),
                          None if X_lab is None else np.asarray(X_lab), n_instances, opts)


def bait_query(classifier, X_pool, n_instances=1, **options):
    """BAIT on X_pool (the unlabeled samples): (indices [n_instances] into X_pool, gains)."""
    return _query("bait", classifier, X_pool, n_instances, options)


def fishermask_query(classifier, X_pool, n_instances=1, **options):
    """FisherMask on X_pool (pct_top=None: all of W; a fraction: W's top Fisher entries):
    (indices [n_instances] into X_pool, gains)."""
    return _query("fishermask", classifier, X_pool, n_instances, options)
