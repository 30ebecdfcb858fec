"""Uncertainty sampling: score each unlabeled point by its softmax output alone, take the top.
Each pick's gain (Strategy.select's return_gains) is its score."""
import torch

from .base import Picks, Strategy

__all__ = ["Entropy", "Margin", "LeastConfidence"]

# Keeps log 0 finite in the entropy; a probability this small adds nothing to -Σ p log p.
_P_FLOOR = 1e-12


def _top(scores, budget):
    """Picks of the `budget` largest scores, with those scores; ties go to the lowest
    position."""
    top = torch.argsort(-scores, stable=True)[:budget]
    return Picks(top, scores[top])


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
