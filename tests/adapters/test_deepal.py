"""DeepAL / BADGE style: BaitSampling / FisherMaskSampling in front of the smallest Strategy base
class with that interface, three rounds on digits with a net returning (logits, embedding)."""
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from testing import check_picks
from fishermask_ext import ParamMask, masked_grad_embeddings, select_from_pool
from fishermask_ext.adapters.deepal import BaitSampling, FisherMaskSampling
from fishermask_ext.strategies import FisherMask


class Handler(Dataset):
    """DeepAL's handler: (x, y, idx) items."""

    def __init__(self, X, Y, transform=None):
        self.X, self.Y, self.transform = X, Y, transform

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        x = torch.as_tensor(self.X[i], dtype=torch.float32)
        return (self.transform(x) if self.transform else x), int(self.Y[i]), i


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body, self.fc = nn.Sequential(nn.Linear(16, 12), nn.ReLU()), nn.Linear(12, 10)

    def forward(self, x):
        emb = self.body(x)
        return self.fc(emb), emb


class Strategy:
    """The convention's base class, cut to what a loop uses: the fields, train(), update()."""

    def __init__(self, X, Y, idxs_lb, net, handler, args):
        self.X, self.Y, self.idxs_lb = X, Y, idxs_lb
        self.net, self.handler, self.args = net, handler, args

    def update(self, idxs_lb):
        self.idxs_lb = idxs_lb

    def train(self):
        torch.manual_seed(0)
        self.clf = self.net
        opt = torch.optim.SGD(self.clf.parameters(), lr=0.5)
        x = torch.as_tensor(self.X[self.idxs_lb], dtype=torch.float32)
        y = torch.as_tensor(self.Y[self.idxs_lb])
        for _ in range(30):
            opt.zero_grad()
            nn.functional.cross_entropy(self.clf(x)[0], y).backward()
            opt.step()


class Bait(BaitSampling, Strategy):
    pass


class Fisher(FisherMaskSampling, Strategy):
    pass


def _expected(cls, net, X, idxs_lb, n):
    x = torch.as_tensor(X, dtype=torch.float32)
    if cls is Bait:       # BAIT by hand: the last Linear's weight, sqrt_p rows, λ = 0.01, 1 step
        mask = ParamMask(net, {"fc.weight": torch.arange(120)})
        emb = masked_grad_embeddings(net, x, mask, weighting="sqrt_p")
        return select_from_pool(emb, n, torch.as_tensor(idxs_lb), lamb=0.01,
                                backward_steps=1).numpy()
    return FisherMask().select(net, x, idxs_lb, n).numpy()


@pytest.mark.parametrize("cls", [Bait, Fisher])
def test_three_rounds(digits, cls):
    X, Y = digits
    torch.manual_seed(0)
    idxs_lb = np.zeros(len(X), bool)
    idxs_lb[:20] = True
    strategy = cls(X, Y, idxs_lb.copy(), Net(), Handler, {"loader_te_args": {"batch_size": 64}})
    for _ in range(3):
        strategy.train()
        q = strategy.query(8)
        check_picks(q, strategy.idxs_lb, 8)
        np.testing.assert_array_equal(q, _expected(cls, strategy.clf, X, strategy.idxs_lb, 8))
        np.testing.assert_array_equal(q, strategy.query(8))        # same state, same picks
        assert strategy.last_gains.shape == (8,)
        idxs_lb[q] = True
        strategy.update(idxs_lb.copy())


def test_alone_and_errors(digits):
    X, Y = digits
    idxs_lb = np.arange(len(X)) < 20
    torch.manual_seed(1)
    alone = BaitSampling(X, Y, idxs_lb, Net(), Handler, {})      # untrained, standalone
    check_picks(alone.query(5), idxs_lb, 5)
    with pytest.raises(ValueError, match="budget"):
        alone.query(len(X))
    with pytest.raises(TypeError, match="nn.Module"):
        BaitSampling(X, Y, idxs_lb, Net, Handler, {}).query(3)    # the class, not a model
