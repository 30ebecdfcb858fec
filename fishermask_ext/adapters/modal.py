"""modAL query strategies: `ActiveLearner(estimator, query_strategy=bait_query)`.

modAL calls `query_strategy(learner, X_pool, *args, **kwargs)`. What it expects back changed:
modAL 0.4.2 (whose `query` has `return_metrics`) unpacks the result as (indices into X_pool,
metrics), while modAL 0.4.1 takes the result as the indices themselves (and would pass a tuple
through to the caller unchanged). Both functions follow the installed modAL: (picks, gains) on
0.4.2, the gains being each pick's trace-ratio decrease, and picks alone on 0.4.1. Either way
`learner.query(X_pool, n_instances=k)` returns (indices, X_pool[indices]).

The labeled set is the learner's own training data (`learner.X_training`). A skorch
`NeuralNetClassifier` estimator (modAL's way to a torch model) is embedded by its module's
masked per-class gradients (fishermask_ext.strategies, on the labeled and pool samples);
any other estimator by the linear-softmax Fisher embedding of its `predict_proba`
(fishermask_ext.adapters._embed: exact for multinomial logistic regression, a last-layer
approximation for other models). Options (lamb, backward_steps, weighting, transform, pct_top
for FisherMask, ...) go as keyword arguments of `learner.query(X_pool, n_instances=...,
lamb=...)`, or bind them with functools.partial.
"""
import inspect

import numpy as np
from modAL.models.base import BaseLearner

from ._sklearn import sklearn_options, sklearn_select
from ._torch import skorch_module, skorch_select

__all__ = ["bait_query", "fishermask_query"]

# modAL >= 0.4.2 unpacks a strategy's result into (indices, metrics); 0.4.1 wants the indices.
RETURNS_METRICS = "return_metrics" in inspect.signature(BaseLearner.query).parameters


def _query(kind, classifier, X_pool, n_instances, options):
    opts = sklearn_options(kind, options)
    X_pool = np.asarray(X_pool)
    X_lab = getattr(classifier, "X_training", None)
    X_lab = X_pool[:0] if X_lab is None else np.asarray(X_lab)
    found = skorch_module(getattr(classifier, "estimator", classifier))
    if found is None:
        picks, gains = sklearn_select(kind, classifier, X_pool, X_lab, n_instances, opts)
    else:
        if opts.pop("transform") is not None:
            raise ValueError("transform sets φ for an estimator seen through predict_proba; a "
                             "skorch module is embedded by its own gradients: leave it unset")
        # The pool the strategy sees: the labeled samples first, then X_pool.
        rows = np.concatenate([X_lab, X_pool])
        mask = np.arange(len(rows)) < len(X_lab)
        picks, gains = skorch_select(kind, found, rows, mask, n_instances, opts)
        picks = picks - len(X_lab)
    return (picks, gains) if RETURNS_METRICS else picks


def bait_query(classifier, X_pool, n_instances=1, **options):
    """BAIT on X_pool (the unlabeled samples): indices [n_instances] into X_pool (and their
    gains on modAL >= 0.4.2, module docstring)."""
    return _query("bait", classifier, X_pool, n_instances, options)


def fishermask_query(classifier, X_pool, n_instances=1, **options):
    """FisherMask on X_pool (pct_top=None: all of W for a predict_proba estimator, the
    strategy's automatic fraction for a torch module; a fraction: the top Fisher entries):
    indices [n_instances] into X_pool (and their gains on modAL >= 0.4.2)."""
    return _query("fishermask", classifier, X_pool, n_instances, options)
