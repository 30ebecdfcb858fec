"""baal: `FisherHeuristic(wrapper, dataset, query_size)`, a set-valued heuristic for
`ActiveLearningLoop`, and `fisher_loop(...)`, the loop built around it (one object to pass).

A Fisher batch is chosen as a set, not by ranking per-sample scores, so the heuristic overrides
get_ranks: the first query_size ranks are the BAIT (or FisherMask) batch in pick order, the rest
of the pool follows in pool order. The model comes from the ModelWrapper (`wrapper.model`, or a
plain nn.Module) and the labeled set from the ActiveLearningDataset (`dataset.labelled`); the
loop's predictions are only checked for length: the heuristic differentiates the model itself.
The scores returned next to the ranks are the picks' gains (trace-ratio decrease) and NaN for the
points not picked, whose scores the greedy loop does not keep.
"""
import numpy as np
from baal.active import ActiveLearningLoop
from baal.active.heuristics import AbstractHeuristic

from .._checks import check_choice, check_int
from ._torch import torch_select

__all__ = ["FisherHeuristic", "fisher_loop"]


class FisherHeuristic(AbstractHeuristic):
    """kind "bait" or "fishermask"; options: those of fishermask_ext.strategies.Bait /
    FisherMask (lamb, backward_steps, seed, batch_size, device, ...)."""

    def __init__(self, wrapper, dataset, query_size, kind="bait", **options):
        super().__init__(reverse=True)
        check_choice(kind, "kind", ("bait", "fishermask"))
        self.model = getattr(wrapper, "model", wrapper)
        self.dataset, self.kind, self.options = dataset, kind, options
        self.query_size = check_int(query_size, "query_size", minimum=1)
        self.last_picks = None

    def get_ranks(self, predictions, target_predictions=None):
        labelled = np.asarray(self.dataset.labelled, dtype=bool)
        pool = np.flatnonzero(~labelled)         # baal's pool: the unlabeled indices, ascending
        if len(predictions) != len(pool):
            raise ValueError(f"got predictions for {len(predictions)} points but the "
                             f"ActiveLearningDataset has {len(pool)} unlabeled ones; the Fisher "
                             f"heuristic selects from the whole pool (leave max_sample at -1)")
        K = min(self.query_size, len(pool))
        # The underlying dataset holds every point, labeled or not, in dataset order.
        picks, gains = torch_select(self.kind, self.model, self.dataset._dataset, labelled, K,
                                    self.options)
        self.last_picks = picks
        first = np.searchsorted(pool, picks)     # dataset indices -> pool positions
        rest = np.setdiff1d(np.arange(len(pool)), first)
        scores = np.full(len(pool), np.nan)
        scores[first] = gains
        return np.concatenate([first, rest]), scores


def fisher_loop(dataset, wrapper, query_size, kind="bait", **options):
    """An ActiveLearningLoop labeling query_size points of `dataset` per step() with the Fisher
    heuristic on `wrapper`'s model; it skips baal's prediction pass, which the heuristic does
    not read."""
    heuristic = FisherHeuristic(wrapper, dataset, query_size, kind, **options)
    return ActiveLearningLoop(dataset, lambda pool: np.zeros((len(pool), 1)), heuristic,
                              query_size=query_size)
