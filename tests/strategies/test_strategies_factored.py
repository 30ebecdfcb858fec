"""FisherMask and BAIT embed factored by default (factored="auto") where the mask holds the
whole classifier: the same picks as the dense embeddings, gains within tol (float64)."""
import pytest
import torch

from fishermask_ext import MLP, FactoredEmbeddings
from fishermask_ext import strategies
from fishermask_ext.testing import greedy_terms, tol

N, C = 40, 4


@pytest.fixture(scope="module")
def view():
    torch.manual_seed(0)
    model = MLP(in_features=16, num_classes=C, hidden=(8,)).double().eval()
    pool = torch.randn(N, 1, 4, 4, dtype=torch.float64)
    labeled = torch.zeros(N, dtype=torch.bool)
    labeled[torch.randperm(N)[:8]] = True
    return strategies.PoolView(model, pool, labeled, 0, 16, torch.device("cpu"))


@pytest.mark.parametrize("name, options", [
    ("fishermask", {}),
    ("fishermask", {"variant": "reference"}),
    ("fishermask", {"fish_init": False}),
    ("bait", {}),
])
def test_factored_default_same_picks_as_dense(view, name, options):
    options = {**options, **({"n_samples": 16} if name == "fishermask" else {})}
    auto = strategies.get(name, **options)
    dense = strategies.get(name, factored=False, **options)
    mask = auto.mask(view)
    assert auto.factored == "auto"
    assert isinstance(auto._embed(view, view.pool, mask), FactoredEmbeddings)  # two paths
    dense_emb = dense._embed(view, view.pool, mask)
    assert isinstance(dense_emb, torch.Tensor)
    D = dense_emb.shape[-1]
    picks, gains = auto._pool_picks(view, 6, mask)
    want, want_gains = dense._pool_picks(view, 6, mask)
    assert picks.tolist() == want.tolist()
    torch.testing.assert_close(gains, want_gains, **tol(torch.float64, magnitude=want_gains,
                                                        terms=greedy_terms(D, C, steps=6)))


def test_factored_option_checked_at_construction():
    with pytest.raises(ValueError, match="factored must be one of True, False, 'auto', got 'yes'"):
        strategies.get("bait", factored="yes")
    assert strategies.get("fishermask", factored=False).factored is False
