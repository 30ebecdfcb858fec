"""Fixtures shared by the `fishermask embed` tests (test_embed_cmd.py, test_embed_factored.py)
and by the strategy tests (test_strategies.py, test_strategy_gains.py)."""
import pytest
import torch

from fishermask_ext.al import data, embed_cmd
from fishermask_ext.nn import MLP, get_model

# The strategy tests' pool: N points of 16 features, C classes.
N, C = 60, 4


@pytest.fixture
def setup():
    """(model, pool [N, 1, 4, 4], labeled [N] bool with 10 labeled points) of the strategy
    tests: a seeded MLP with 8 hidden units."""
    torch.manual_seed(0)
    model = MLP(in_features=16, num_classes=C, hidden=(8,))
    pool = torch.randn(N, 1, 4, 4)
    labeled = torch.zeros(N, dtype=torch.bool)
    labeled[torch.randperm(N)[:10]] = True
    return model, pool, labeled


@pytest.fixture
def saved(tmp_path):
    """(checkpoint path, model, pool): an untrained seeded MLP on 150 digits."""
    pool = data.load("digits", pool_size=150)[0]
    torch.manual_seed(0)
    model = get_model("mlp", in_features=64, num_classes=10, hidden=[8])
    path = str(tmp_path / "model.pt")
    embed_cmd.save_checkpoint(path, model, "mlp", 10, {"hidden": [8]})
    return path, model, pool
