"""Fixtures shared by the `fishermask embed` tests (test_embed_cmd.py, test_embed_factored.py)."""
import pytest
import torch

from fishermask_ext.al import data, embed_cmd
from fishermask_ext.nn import get_model


@pytest.fixture
def saved(tmp_path):
    """(checkpoint path, model, pool): an untrained seeded MLP on 150 digits."""
    pool = data.load("digits", pool_size=150)[0]
    torch.manual_seed(0)
    model = get_model("mlp", in_features=64, num_classes=10, hidden=[8])
    path = str(tmp_path / "model.pt")
    embed_cmd.save_checkpoint(path, model, "mlp", 10, {"hidden": [8]})
    return path, model, pool
