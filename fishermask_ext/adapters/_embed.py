"""The Fisher embedding of a scikit-learn classifier with `predict_proba`, seen as linear-softmax.

For multinomial logistic regression p = softmax(W φ(x)), W [C, F], the gradient of log p_c with
respect to W is (e_c − p) ⊗ φ(x): entry (k, f) is (δ_ck − p_k) φ_f. Row c of the embedding of x
is that gradient flattened (column j = k·F + f), times sqrt(p_c) with weighting "sqrt_p" (then
X_iᵀX_i = Σ_c p_c g_c g_cᵀ is the Fisher of x, BAIT's embedding) or times 1 with "none" (the
FisherMask reference). So X has shape [N, C, C·F].

What it means for other models: the embedding only needs the model's probabilities p(x) and
features φ(x). For a model that is not multinomial logistic regression on φ (a random forest, an
SVM with Platt scaling, an MLP on raw features), it is the Fisher of the multinomial logistic
regression on φ that would output the same probabilities at x: a last-layer (linear-probe)
approximation of the model's own Fisher, as BAIT and BADGE use for a network's last layer.
The choice of φ matters then: pass `transform` (e.g. the model's own hidden features, or a
`StandardScaler`'s transform) to make φ the space the model is linear in. To include an
intercept, append a constant 1 to φ in `transform`. The class columns are those of
`predict_proba` (the classes the classifier knows).
"""
import numpy as np
import torch

from .._checks import check_choice, check_fraction
from ..nn.factored import check_factored
from ..nn.hooks import WEIGHTINGS
from ..store.factored import FactoredEmbeddings

__all__ = ["linear_softmax_embeddings", "linear_softmax_fisher_diagonal", "top_columns",
           "classifier_embeddings"]


def _probs_features(probs, features):
    p = np.asarray(probs, dtype=np.float64)
    phi = np.asarray(features, dtype=np.float64)
    if p.ndim != 2 or phi.ndim != 2 or len(p) != len(phi):
        raise ValueError(f"probs must be [N, C] and features [N, F] with the same N, got "
                         f"{p.shape} and {phi.shape}; pass predict_proba(X) and a 2-D φ(X)")
    if not (np.isfinite(p).all() and np.isfinite(phi).all()):
        raise ValueError("probs and features must be finite (no NaN or Inf): check the "
                         "classifier's predict_proba and the transform")
    return p, phi


def linear_softmax_embeddings(probs, features, *, weighting="sqrt_p", columns=None,
                              factored=False):
    """[N, C, len(columns)] float64: row c of sample i is w_c·(e_c − p_i) ⊗ φ_i at `columns`.

    probs: [N, C] class probabilities; features: [N, F] φ(x); weighting: "sqrt_p" (w_c =
    sqrt(p_c), the Fisher) or "none" (w_c = 1); columns: indices j = k·F + f into the C·F entries
    of W (None: all of them, in that order). Only the requested columns are formed.
    factored: False (a numpy array); True: FactoredEmbeddings(G, φ) (torch float64), G[i, c, k]
    = w_c·(δ_ck − p_k), the same matrix with column j = k·F + f, its natural order: it needs
    every column (columns=None); "auto": factored when columns is None, else the array.
    """
    check_choice(weighting, "weighting", WEIGHTINGS)
    factored = check_factored(factored)
    p, phi = _probs_features(probs, features)
    if factored is True and columns is not None:
        raise ValueError("factored=True needs every entry of W (columns=None, pct_top=None): "
                         "a subset of W's columns is not an outer product; pass "
                         "factored=False or 'auto'")
    if factored and columns is None:
        p_t = torch.from_numpy(p)
        G = torch.eye(p.shape[1], dtype=torch.float64) - p_t[:, None, :]     # δ_ck − p_k
        if weighting == "sqrt_p":
            G = G * p_t.sqrt()[:, :, None]                                   # row c times √p_c
        return FactoredEmbeddings(G, torch.from_numpy(phi))
    C, F = p.shape[1], phi.shape[1]
    cols = np.arange(C * F) if columns is None else np.asarray(columns, dtype=np.int64)
    k, f = np.divmod(cols, F)
    # (δ_ck − p_k) for every class row c and column class k: [N, C, len(cols)].
    factor = np.eye(C)[None, :, k] - p[:, None, k]
    emb = factor * phi[:, None, f]
    if weighting == "sqrt_p":
        emb *= np.sqrt(p)[:, :, None]
    return emb


def linear_softmax_fisher_diagonal(probs, features):
    """[C·F] float64: the diagonal of the mean Fisher, (1/N) Σ_i Σ_c p_c g_c², in closed form.

    Σ_c p_c (δ_ck − p_k)² = p_k(1 − p_k)² + (1 − p_k) p_k² = p_k (1 − p_k), so entry (k, f) is
    the mean over samples of p_k (1 − p_k) φ_f²: step A of docs/ALGORITHM.md for this model
    without forming an embedding.
    """
    p, phi = _probs_features(probs, features)
    return ((p * (1 - p)).T @ phi ** 2 / max(len(p), 1)).reshape(-1)


def top_columns(diagonal, pct_top):
    """Ascending indices of the int(pct_top · D) (at least 1) largest diagonal entries, ties
    to the lower index (step B); pct_top None or 1 keeps all D."""
    D = len(diagonal)
    if pct_top is None:
        return np.arange(D)
    n = max(1, int(check_fraction(pct_top, "pct_top") * D))
    # A stable sort of −diag puts equal entries in index order: reproducible masks.
    return np.sort(np.argsort(-np.asarray(diagonal), kind="stable")[:n])


def classifier_embeddings(clf, X, *, transform=None, weighting="sqrt_p", columns=None,
                          factored=False):
    """linear_softmax_embeddings of a classifier: probs = clf.predict_proba(X), φ = transform(X)
    (the raw features when transform is None)."""
    if not hasattr(clf, "predict_proba"):
        raise TypeError(f"the classifier ({type(clf).__name__}) has no predict_proba; the "
                        f"Fisher embedding needs class probabilities")
    if transform is not None and not callable(transform):
        raise TypeError(f"transform must be a callable X -> features [N, F] or None, got "
                        f"{type(transform).__name__}")
    phi = np.asarray(X if transform is None else transform(X))
    return linear_softmax_embeddings(clf.predict_proba(X), phi.reshape(len(phi), -1),
                                     weighting=weighting, columns=columns, factored=factored)
