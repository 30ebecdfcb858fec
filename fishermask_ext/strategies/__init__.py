"""Active-learning query strategies behind one interface, and their registry.

    strategy = strategies.get("fishermask", seed=0, pct_top=0.01)
    picks = strategy.select(model, pool, labeled_mask, budget)   # [budget] int64 pool positions
    picks, gains = strategy.select(model, pool, labeled_mask, budget, return_gains=True)

`Strategy.select` checks its arguments, runs the model in eval mode and hands a `PoolView` to
`choose`, the one method a strategy overrides (it returns positions, or `Picks`: positions and
their gains). Every strategy takes `seed` (same seed, same picks), `batch_size` and `device`
(where the model runs). One module per family: fisher.py (fishermask, fishermask_reference,
bait), diversity.py (badge, coreset), uncertainty.py (entropy, margin, least_confidence),
random.py (random).
"""
import inspect

from .._checks import check_choice, check_keys
from .base import Picks, PoolView, Strategy
from .diversity import Badge, CoreSet
from .fisher import Bait, FisherMask, ReferenceFisherMask
from .random import Random
from .uncertainty import Entropy, LeastConfidence, Margin

__all__ = ["Strategy", "PoolView", "Picks", "get", "available", "STRATEGIES"]


STRATEGIES = {"fishermask": FisherMask, "fishermask_reference": ReferenceFisherMask, "bait": Bait,
              "badge": Badge, "coreset": CoreSet, "entropy": Entropy, "margin": Margin,
              "least_confidence": LeastConfidence, "random": Random}


def available():
    """The registered strategy names."""
    return sorted(STRATEGIES)


def get(name, **options):
    """A new strategy by name; `options` go to its constructor (seed, batch_size, device, ...)."""
    check_choice(name, "strategy", available())
    cls = STRATEGIES[name]
    valid = {p for c in cls.__mro__ if c is not object for p in
             inspect.signature(c.__init__).parameters if p not in ("self", "common")}
    check_keys(options, sorted(valid), f"strategy {name!r}")
    return cls(**options)
