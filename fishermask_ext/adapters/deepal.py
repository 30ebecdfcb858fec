"""DeepAL / BADGE-style strategies: `BaitSampling(X, Y, idxs_lb, net, handler, args)` and
`FisherMaskSampling(...)`, whose `query(n)` returns n indices into X, all unlabeled.

The convention (DeepAL, Huang 2018; BADGE, Ash et al. 2020) is code to copy, not a package:
`net` returns (logits, embedding), `handler(X, Y, transform=...)` is a Dataset of (x, y, idx)
items, `idxs_lb` the [N] bool mask of labeled points, `args` a dict (`transformTest` or
`transform`, `loader_te_args`). Mix a class in front of your own Strategy base to keep its
train() and predict(): `class Bait(BaitSampling, Strategy): pass`; used alone it only queries.
The model is `self.clf` (what DeepAL's and BADGE's train() set) or else `self.net` when that is
an nn.Module. Options (lamb, backward_steps, pct_top, n_samples, seed, batch_size, device, ...)
are the keyword arguments of fishermask_ext.strategies.Bait / FisherMask.
"""
import numpy as np
import torch
from torch.utils.data import DataLoader

from ._torch import torch_select

__all__ = ["BaitSampling", "FisherMaskSampling"]


class _FisherSampling:
    kind = None

    def __init__(self, X, Y, idxs_lb, net, handler, args, **options):
        mro = type(self).__mro__
        if mro[mro.index(_FisherSampling) + 1] is object:   # used alone: keep what query reads
            self.X, self.Y, self.idxs_lb = X, Y, idxs_lb
            self.net, self.handler, self.args = net, handler, args
        else:                                               # in front of the user's base class
            super().__init__(X, Y, idxs_lb, net, handler, args)
        self.options = options
        self.last_gains = None

    def update(self, idxs_lb):
        """The labeled mask after labeling (DeepAL's update)."""
        self.idxs_lb = idxs_lb

    def query(self, n):
        """n indices into X, unlabeled and distinct, in pick order; their gains in last_gains."""
        model = getattr(self, "clf", None)
        model = model if isinstance(model, torch.nn.Module) else self.net
        args = self.args or {}
        transform = args.get("transformTest", args.get("transform"))
        data = DataLoader(self.handler(self.X, self.Y, transform=transform), shuffle=False,
                          **args.get("loader_te_args", {}))
        picks, self.last_gains = torch_select(self.kind, model, data, np.asarray(self.idxs_lb),
                                              n, self.options)
        return picks


class BaitSampling(_FisherSampling):
    """BAIT on the net's last nn.Linear weight (fishermask_ext.strategies.Bait)."""
    kind = "bait"


class FisherMaskSampling(_FisherSampling):
    """FisherMask (fishermask_ext.strategies.FisherMask): masked gradient embeddings."""
    kind = "fishermask"
