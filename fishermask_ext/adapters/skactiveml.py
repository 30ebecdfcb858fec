"""scikit-activeml query strategies: `Bait()` and `FisherMask()` where `UncertaintySampling()`
would go, e.g. `Bait().query(X, y, clf, batch_size=10)`.

They follow SingleAnnotatorPoolQueryStrategy.query(X, y, clf, fit_clf=True, sample_weight=None,
candidates=None, batch_size=1, return_utilities=False): y marks unlabeled samples with
`missing_label` (MISSING_LABEL, NaN, by default); candidates are None (every unlabeled sample),
indices into X (labeled ones among them are skipped) or an array of new samples; the query
indices index X, or the candidate array when one is given. clf is a SkactivemlClassifier (e.g.
SklearnClassifier(LogisticRegression(), classes=...)), refitted on (X, y) when fit_clf.

The embedding is the linear-softmax Fisher embedding of clf.predict_proba (adapters._embed: exact
for multinomial logistic regression, a last-layer approximation for other models; φ = the raw
features or `transform`). scikit-activeml's torch route (its skorch wrapper) is not covered: it
needs skorch >= 1.2, which modAL's pin (skorch == 0.9.0) excludes from the same environment.

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
        X_lab = X[is_labeled(y, missing_label=self.missing_label_)]
        picks, gains = sklearn_select(self.kind, clf, X_cand, X_lab, batch_size,
                                      sklearn_options(self.kind, self.options))
        query_indices = cand_rows[picks]
        if not return_utilities:
            return query_indices
        utilities = np.full((batch_size, n_cols), np.nan)
        utilities[np.arange(batch_size), query_indices] = gains
        return query_indices, utilities


class Bait(_FisherQuery):
    """BAIT (Ash et al., 2021) for a SkactivemlClassifier: options as
    fishermask_ext.al.strategies.Bait (lamb=0.01, backward_steps=1, weighting="sqrt_p", parity,
    backend) plus transform (φ; None = the raw features)."""
    kind = "bait"


class FisherMask(_FisherQuery):
    """FisherMask (Gul et al., 2024) for a SkactivemlClassifier: options as
    fishermask_ext.al.strategies.FisherMask (lamb=1, backward_steps=0, weighting="none", ...),
    transform, and pct_top (None: all of W, what FisherMask keeps of a one-layer model; a
    fraction: the entries of W with the largest Fisher diagonal over X)."""
    kind = "fishermask"
