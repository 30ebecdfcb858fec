"""scikit-activeml query strategies: `Bait()` and `FisherMask()` where `UncertaintySampling()`
would go, e.g. `Bait().query(X, y, clf, batch_size=10)`.

They follow SingleAnnotatorPoolQueryStrategy.query(X, y, clf, fit_clf=True, sample_weight=None,
candidates=None, batch_size=1, return_utilities=False): y marks unlabeled samples with
`missing_label` (MISSING_LABEL, NaN, by default); candidates are None (every unlabeled sample),
indices into X (labeled ones among them are skipped) or an array of new samples; the query
indices index X, or the candidate array when one is given. clf is a SkactivemlClassifier (e.g.
SklearnClassifier(LogisticRegression(), classes=...)), refitted on (X, y) when fit_clf.

For a torch model through scikit-activeml's own wrapper, `SkorchClassifier` (the `skactiveml`
extra brings the skorch >= 1.2 it needs), the strategy runs on the fitted module itself: the
masked per-class gradient embeddings of fishermask_ext.strategies (BAIT: the last nn.Linear
weight; FisherMask: the Fisher mask, its sample seeded from random_state), the module's first
output taken as logits. Any other classifier is embedded by the linear-softmax Fisher embedding
of clf.predict_proba (adapters._embed: exact for multinomial logistic regression, a last-layer
approximation for other models; φ = the raw features or `transform`).

Utilities [batch_size, n_samples] (or [batch_size, n_candidates]): row i holds, at the i-th
query index, the gain (trace-ratio decrease) that made the greedy pick it, and NaN everywhere
else. The greedy loop keeps only the picked candidate's score per step, so the other entries are
unknown rather than low; nanargmax of row i is query index i, as scikit-activeml expects.
"""
import numpy as np
from sklearn import clone
from skactiveml.base import SingleAnnotatorPoolQueryStrategy, SkactivemlClassifier
from skactiveml.utils import MISSING_LABEL, check_equal_missing_label, check_type, \
    is_labeled, unlabeled_indices

from ._sklearn import sklearn_options, sklearn_select
from ._torch import skorch_module, skorch_select

__all__ = ["Bait", "FisherMask"]


class _FisherQuery(SingleAnnotatorPoolQueryStrategy):
    kind = None

    def __init__(self, missing_label=MISSING_LABEL, random_state=None, **options):
        super().__init__(missing_label=missing_label, random_state=random_state)
        sklearn_options(self.kind, options)          # an unknown option fails here, not later
        self.options = options

    def query(self, X, y, clf, fit_clf=True, sample_weight=None, candidates=None,
              batch_size=1, return_utilities=False):
        """The batch_size query indices (with return_utilities, (indices, utilities))."""
        X, y, candidates, batch_size, return_utilities = self._validate_data(
            X, y, candidates, batch_size, return_utilities, reset=True)
        X_cand, mapping = self._transform_candidates(candidates, X, y)
        check_type(clf, "clf", SkactivemlClassifier)
        check_equal_missing_label(clf.missing_label, self.missing_label_)
        check_type(fit_clf, "fit_clf", bool)
        if fit_clf:
            clf = clone(clf).fit(X, y) if sample_weight is None else \
                clone(clf).fit(X, y, sample_weight)
        if mapping is None:                  # new samples: every one is a candidate
            cand_rows, n_cols = np.arange(len(X_cand)), len(X_cand)
        else:                                # positions into X; labeled ones are skipped
            cand_rows = mapping[unlabeled_indices(y[mapping], missing_label=self.missing_label_)]
            X_cand, n_cols = X[cand_rows], len(X)
        labeled = is_labeled(y, missing_label=self.missing_label_)
        found = skorch_module(clf)
        if found is None:
            picks, gains = sklearn_select(self.kind, clf, X_cand, X[labeled], batch_size,
                                          sklearn_options(self.kind, self.options))
            query_indices = cand_rows[picks]
        else:
            query_indices, gains = self._query_module(clf, found, X, labeled, X_cand,
                                                      None if mapping is None else cand_rows,
                                                      batch_size)
        if not return_utilities:
            return query_indices
        utilities = np.full((batch_size, n_cols), np.nan)
        utilities[np.arange(batch_size), query_indices] = gains
        return query_indices, utilities

    def _query_module(self, clf, found, X, labeled, X_cand, cand_rows, batch_size):
        """(query indices, gains) for a SkorchClassifier: the strategy on its torch module
        (fishermask_ext.strategies: masked per-class gradients) over the pool of the labeled
        samples and the candidates, in X's order when the candidates index X (with every
        unlabeled sample a candidate, the pool is X itself)."""
        options = dict(self.options)
        if options.pop("transform", None) is not None:
            raise ValueError("transform sets φ for a classifier seen through predict_proba; a "
                             "SkorchClassifier's torch module is embedded by its own "
                             "gradients: leave transform unset")
        # skactiveml's random_state_ (set by _validate_data) seeds FisherMask's Fisher sample.
        options["seed"] = int(self.random_state_.randint(2**31 - 1))
        dtype = getattr(clf, "sample_dtype", None) or np.float32
        if cand_rows is None:                # new samples: after the labeled ones
            rows = np.concatenate([X[labeled], X_cand])
            mask = np.arange(len(rows)) < int(labeled.sum())
            picks, gains = skorch_select(self.kind, found, rows, mask, batch_size, options,
                                         dtype)
            return picks - int(labeled.sum()), gains
        keep = np.union1d(np.flatnonzero(labeled), cand_rows)     # ascending: X's order
        rows = X if len(keep) == len(X) else X[keep]
        picks, gains = skorch_select(self.kind, found, rows, labeled[keep], batch_size, options,
                                     dtype)
        return keep[picks], gains


class Bait(_FisherQuery):
    """BAIT (Ash et al., 2021) for a SkactivemlClassifier: options as
    fishermask_ext.strategies.Bait (lamb=0.01, backward_steps=1, weighting="sqrt_p", parity,
    backend) plus transform (φ; None = the raw features)."""
    kind = "bait"


class FisherMask(_FisherQuery):
    """FisherMask (Gul et al., 2024) for a SkactivemlClassifier: options as
    fishermask_ext.strategies.FisherMask (lamb=1, backward_steps=0, weighting="sqrt_p", ...),
    transform, and pct_top (None: all of W, what FisherMask keeps of a one-layer model; a
    fraction: the entries of W with the largest Fisher diagonal over X)."""
    kind = "fishermask"
