"""Torch models through the frameworks' own skorch wrappers: scikit-activeml's SkorchClassifier
and a skorch NeuralNetClassifier inside modAL's ActiveLearner, three rounds on digits each.

Both need skorch >= 1.2 (the `skactiveml` extra brings it); an environment holding modAL
0.4.2.1's pin, skorch 0.9.0, cannot import skorch at all, and these tests skip there."""
import numpy as np
import pytest
import torch
from torch import nn

skorch = pytest.importorskip("skorch", reason="needs skorch >= 1.2 (the skactiveml extra)")
pytest.importorskip("modAL", reason="needs modAL-python (the modal extra)")
pytest.importorskip("skactiveml", reason="needs scikit-activeml (the skactiveml extra)")
from modAL.models import ActiveLearner                      # noqa: E402
from skactiveml.classifier import SkorchClassifier          # noqa: E402
from skactiveml.utils import MISSING_LABEL                  # noqa: E402

from testing import check_picks                            # noqa: E402
from fishermask_ext import (ParamMask, fisher_mask, masked_grad_embeddings,  # noqa: E402
                            select_from_pool)
from fishermask_ext.adapters import modal, skactiveml       # noqa: E402
from fishermask_ext.strategies.fisher import auto_pct    # noqa: E402

NET = dict(max_epochs=4, lr=0.2, batch_size=16, train_split=None, verbose=0)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body, self.fc = nn.Sequential(nn.Linear(16, 12), nn.ReLU()), nn.Linear(12, 10)

    def forward(self, x):
        return self.fc(self.body(x))


def _expected(kind, module, rows, labeled, k):
    """select_from_pool on the module's embeddings by hand, with the strategy's options."""
    x = torch.as_tensor(rows, dtype=torch.float32)
    labeled = torch.as_tensor(labeled)
    # factored="auto", the strategies' default: the same picks as dense rows, and these gains
    # bit for bit (dense float32 rows would round each product G·h̄ the factors keep exact).
    if kind == "bait":     # the last Linear's weight, sqrt_p rows, λ = 0.01, one backward step
        emb = masked_grad_embeddings(module, x, ParamMask(module, {"fc.weight": torch.arange(120)}),
                                     factored="auto")
        return select_from_pool(emb, k, labeled, lamb=0.01, backward_steps=1, return_gains=True)
    # FisherMask: its automatic pct_top; n_samples (1024) exceeds the pool, so step A sees every
    # row whatever the seed. Rows weighted by sqrt(p_c) (the default variant), λ = 1, no
    # backward step.
    mask = fisher_mask(module, x, pct_top=auto_pct(module))
    emb = masked_grad_embeddings(module, x, mask, weighting="sqrt_p", factored="auto")
    return select_from_pool(emb, k, labeled, return_gains=True)


def _skorch_clf():
    return SkorchClassifier(Net, classes=np.arange(10), random_state=0, neural_net_param_dict=NET)


@pytest.mark.parametrize("cls", [skactiveml.Bait, skactiveml.FisherMask])
def test_skactiveml_skorch_three_rounds(digits, cls):
    X, y_true = digits
    X = X.astype(np.float32)
    y = np.full(len(X), MISSING_LABEL)
    y[:20] = y_true[:20]
    kind = "bait" if cls is skactiveml.Bait else "fishermask"
    for rnd in range(3):
        labeled = ~np.isnan(y)
        clf = _skorch_clf().fit(X, y)           # fitted here, so the test sees the same module
        idx, util = cls(random_state=0).query(X, y, clf, fit_clf=False, batch_size=5,
                                              return_utilities=True)
        want, gains = _expected(kind, clf.neural_net_.module_, X, labeled, 5)
        np.testing.assert_array_equal(idx, want.numpy())
        check_picks(idx, labeled, 5)
        assert util.shape == (5, len(X))
        np.testing.assert_array_equal(np.nanargmax(util, axis=1), idx)
        np.testing.assert_array_equal(util[np.arange(5), idx], gains.numpy())
        if rnd == 0:                            # same state and seed, same picks
            np.testing.assert_array_equal(
                idx, cls(random_state=0).query(X, y, clf, fit_clf=False, batch_size=5))
        y[idx] = y_true[idx]


def test_skactiveml_skorch_candidates_and_errors(digits):
    X, y_true = digits
    X = X.astype(np.float32)
    y = np.full(len(X), MISSING_LABEL)
    y[:20] = y_true[:20]
    clf = _skorch_clf().fit(X, y)
    module = clf.neural_net_.module_
    cand = np.arange(10, 120)                   # 10 of them labeled: skipped
    idx = skactiveml.Bait().query(X, y, clf, fit_clf=False, candidates=cand, batch_size=4)
    keep = np.arange(120)                       # the labeled samples and the candidates
    np.testing.assert_array_equal(
        idx, keep[_expected("bait", module, X[keep], keep < 20, 4)[0].numpy()])
    new = X[150:]                               # samples given directly: indices into them
    idx, util = skactiveml.Bait().query(X[:150], y[:150], clf, fit_clf=False, candidates=new,
                                        batch_size=4, return_utilities=True)
    rows = np.concatenate([X[:20], new])
    want = _expected("bait", module, rows, np.arange(len(rows)) < 20, 4)[0].numpy() - 20
    np.testing.assert_array_equal(idx, want)
    assert util.shape == (4, len(new))
    with pytest.raises(ValueError, match="transform"):
        skactiveml.Bait(transform=np.sqrt).query(X, y, clf, fit_clf=False, batch_size=2)


@pytest.mark.parametrize("query", [modal.bait_query, modal.fishermask_query])
def test_modal_skorch_three_rounds(digits, query):
    X, y = digits
    X = X.astype(np.float32)
    labeled = np.arange(len(X)) < 20
    kind = "bait" if query is modal.bait_query else "fishermask"
    for rnd in range(3):
        torch.manual_seed(0)
        net = skorch.NeuralNetClassifier(Net, **NET)
        # A new learner per round: modAL's teach() passes force_all_finite, which
        # scikit-learn >= 1.8 no longer accepts; the constructor fits without that check.
        learner = ActiveLearner(net, query_strategy=query, X_training=X[labeled],
                                y_training=y[labeled])
        pool = np.flatnonzero(~labeled)
        idx, rows = learner.query(X[pool], n_instances=5)
        both = np.concatenate([X[labeled], X[pool]])        # labeled first, as the adapter
        want = _expected(kind, net.module_, both, np.arange(len(both)) < labeled.sum(), 5)[0]
        np.testing.assert_array_equal(idx, want.numpy() - labeled.sum())
        np.testing.assert_array_equal(rows, X[pool[idx]])
        check_picks(pool[idx], labeled, 5)
        if rnd == 0:
            np.testing.assert_array_equal(idx, learner.query(X[pool], n_instances=5)[0])
        labeled[pool[idx]] = True
