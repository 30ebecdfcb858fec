"""Fixtures shared by the driver's tests: a saved checkpoint for `fishermask embed`, a
Fashion-MNIST folder, and a spy on every strategy's select."""
import numpy as np
import pytest
import torch
from testing import write_idx

from fishermask_ext import strategies
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


@pytest.fixture
def fashion_dir(tmp_path):
    """(folder, (train images, train labels, test images, test labels)): Fashion-MNIST-format
    files of 60 training and 10 test images per class, each a class pattern plus noise
    (learnable in a few epochs)."""
    rng = np.random.default_rng(0)
    patterns = rng.integers(0, 200, (10, 28, 28))

    def images(per_class):
        y = np.repeat(np.arange(10), per_class)
        return (patterns[y] + rng.integers(0, 56, (len(y), 28, 28))), y
    arrays = (*images(60), *images(10))
    folder = tmp_path / "fashion"
    folder.mkdir()
    for name, a in zip(data.FASHION_MNIST_FILES, arrays):
        write_idx(folder / name, a)
    return folder, arrays


@pytest.fixture
def spy_select(monkeypatch):
    """spy_select(around, patch=monkeypatch): from then on every strategy strategies.get builds
    runs around(name, select, *args) in place of select(*args), its own select passed in;
    `patch` a monkeypatch.context() to undo it before the test ends."""
    def install(around, patch=monkeypatch):
        real_get = strategies.get

        def get(name, **options):
            s = real_get(name, **options)
            select = s.select
            s.select = lambda *args: around(name, select, *args)
            return s
        patch.setattr(strategies, "get", get)
    return install
