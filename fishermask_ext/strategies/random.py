"""The baseline every other strategy has to beat: uniformly random unlabeled points."""
import torch

from .base import Strategy

__all__ = ["Random"]


class Random(Strategy):
    """Uniformly random unlabeled points."""

    def choose(self, view, budget):
        return torch.randperm(len(view.unlabeled), generator=view.generator)[:budget]
