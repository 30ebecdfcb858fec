"""Uncertainty sampling: score each unlabeled point by its softmax output alone, take the top."""
import torch

from .base import Strategy

__all__ = ["Entropy", "Margin", "LeastConfidence"]

# Keeps log 0 finite in the entropy; a probability this small adds nothing to -Σ p log p.
_P_FLOOR = 1e-12


def _top(scores, budget):
    """Positions of the `budget` largest scores; ties go to the lowest position."""
    return torch.argsort(-scores, stable=True)[:budget]


class Entropy(Strategy):
    """Largest predictive entropy -Σ p log p."""

    def choose(self, view, budget):
        p = view.probs()
        return _top(-(p * p.clamp_min(_P_FLOOR).log()).sum(1), budget)


class Margin(Strategy):
    """Smallest gap between the two most probable classes."""

    def choose(self, view, budget):
        top2 = view.probs().topk(2, dim=1).values
        return _top(top2[:, 1] - top2[:, 0], budget)


class LeastConfidence(Strategy):
    """Smallest probability of the predicted class."""

    def choose(self, view, budget):
        return _top(-view.probs().max(1).values, budget)
