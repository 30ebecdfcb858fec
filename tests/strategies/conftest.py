"""The strategy tests' pool (test_strategies.py, test_strategy_gains.py)."""
import pytest
import torch

from fishermask_ext.nn import MLP

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
