"""BAIT and FisherMask for scikit-learn classifiers: the options of each, and the selection that
the modAL and scikit-activeml adapters share (embeddings from `_embed`, picks from select_batch)."""
import numpy as np

from .. import strategies
from .._checks import check_keys
from ..select import select_batch
from ._embed import classifier_embeddings, linear_softmax_fisher_diagonal, top_columns

__all__ = ["sklearn_options", "sklearn_select"]

# The options a classifier without layers can use; the rest of the torch strategies' options
# (n_samples, fish_init, ...) concern the network and its labeled-set switches.
OPTION_NAMES = ("weighting", "lamb", "backward_steps", "parity", "backend", "factored")


def _defaults(kind):
    """The strategy's own defaults (one home: fishermask_ext.strategies), so that BAIT here
    is BAIT there (λ = 0.01, one backward step, sqrt_p) and FisherMask is FisherMask (its
    default variant: the options a variant sets are None in the signature, so they are read
    from a strategy built with no options)."""
    built = strategies.get(kind)
    return {name: getattr(built, name) for name in OPTION_NAMES}


def sklearn_options(kind, options):
    """The full option dict of strategy `kind` ("bait" or "fishermask") with `options` applied;
    TypeError naming an option the strategy does not have."""
    allowed = dict(_defaults(kind), transform=None)
    if kind == "fishermask":
        # A classifier seen as linear-softmax is one layer: FisherMask(pct_top=None) keeps the
        # whole W there (auto_pct of a one-layer model is 1); a fraction keeps W's top entries.
        allowed["pct_top"] = None
    check_keys(options, sorted(allowed), kind)
    return {**allowed, **options}


def sklearn_select(kind, clf, X_cand, X_lab, budget, options, *, return_gains=True):
    """Pick `budget` rows of X_cand for a fitted classifier with predict_proba.

    X_lab: the labeled inputs (None or empty: no labeled Fisher). `options`: sklearn_options.
    Returns numpy (picks [K] int64 positions into X_cand, gains [K] float64), or picks only.
    The pool Fisher is the mean over X_cand and X_lab together (select_batch's rule).
    """
    opts = dict(options)
    transform, pct_top = opts.pop("transform"), opts.pop("pct_top", None)
    weighting, factored = opts.pop("weighting"), opts.pop("factored")
    if len(X_cand) == 0:
        raise ValueError("there are no candidates to select from (every sample is labeled "
                         "or the candidate set is empty)")
    has_lab = X_lab is not None and len(X_lab) > 0
    columns = None
    if pct_top is not None:
        # Step A on every known sample (candidates and labeled), then step B: W's top entries.
        X_all = np.concatenate([X_cand, X_lab]) if has_lab else X_cand
        phi = X_all if transform is None else transform(X_all)
        diag = linear_softmax_fisher_diagonal(clf.predict_proba(X_all),
                                              np.asarray(phi).reshape(len(X_all), -1))
        columns = top_columns(diag, pct_top)
    embed = dict(transform=transform, weighting=weighting, columns=columns, factored=factored)
    unlabeled = classifier_embeddings(clf, X_cand, **embed)
    labeled = classifier_embeddings(clf, X_lab, **embed) if has_lab else None
    got = select_batch(unlabeled, budget, labeled=labeled, return_gains=return_gains, **opts)
    # Factored rows are torch tensors, so their results come back as tensors: numpy as ever.
    return tuple(np.asarray(g) for g in got) if return_gains else np.asarray(got)
