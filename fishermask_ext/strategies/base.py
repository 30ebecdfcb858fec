"""The one interface every query strategy implements: `Strategy.select` is the template (checks,
eval mode, the mode restored), `choose` the override point, `PoolView` what `choose` sees."""
from typing import NamedTuple, Optional

import torch
from torch import nn

from .._checks import check_bool, check_budget, check_device, check_int
from ..nn import batches
from ..select.checks import check_mask
from ..nn.state import check_input_dtype, eval_mode, logits_of, model_device, model_dtype

__all__ = ["Strategy", "PoolView", "Picks"]


class Picks(NamedTuple):
    """What `choose` returns when its picks have gains: positions [budget] into
    `view.unlabeled`, and gains [budget], each pick's score as the strategy ranked it."""
    positions: torch.Tensor
    gains: Optional[torch.Tensor]


class PoolView:
    """What a strategy sees: the model, the pool and its split, a seeded generator, forward passes.

    Attributes: model (eval mode), pool [N, ...], labeled_mask [N] bool, unlabeled / labeled
    (int64 pool positions, ascending), generator (torch.Generator seeded with the strategy seed),
    batch_size, device.
    """

    def __init__(self, model, pool, labeled_mask, seed, batch_size, device):
        self.model, self.pool, self.labeled_mask = model, pool, labeled_mask
        self.unlabeled = (~labeled_mask).nonzero().flatten()
        self.labeled = labeled_mask.nonzero().flatten()
        self.generator = torch.Generator().manual_seed(seed)
        self.batch_size, self.device = batch_size, device

    @torch.no_grad()
    def forward(self, positions):
        """(probs [n, C] float32, penultimate features [n, H] float32) of pool[positions], on CPU.

        Features are the model's second output when it returns (logits, embedding), else the input
        of its last nn.Linear, captured with a forward hook.
        """
        last = [m for m in self.model.modules() if isinstance(m, nn.Linear)]
        captured, feats, probs = [], [], []
        hook = last[-1].register_forward_hook(
            lambda mod, inp, out: captured.append(inp[0])) if last else None
        try:
            for s in range(0, len(positions), self.batch_size):
                out = self.model(self.pool[positions[s:s + self.batch_size]].to(self.device))
                if isinstance(out, (tuple, list)):        # (logits, embedding): no hook needed
                    captured[:] = [out[1]]
                out = logits_of(out)
                if not captured:
                    raise TypeError("cannot find penultimate features: the model neither "
                                    "returns (logits, embedding) nor ends in an nn.Linear")
                feats.append(captured.pop().flatten(1).float().cpu())
                probs.append(out.float().softmax(1).cpu())
                captured.clear()
        finally:
            if hook is not None:
                hook.remove()
        if not probs:
            return torch.zeros(0, 0), torch.zeros(0, 0)
        return torch.cat(probs), torch.cat(feats)

    def probs(self):
        """Softmax outputs [U, C] of the unlabeled points."""
        return self.forward(self.unlabeled)[0]


class Strategy:
    """Base class: `select` is the template, `choose` the override point."""

    def __init__(self, *, seed=0, batch_size=256, device=None):
        self.seed = check_int(seed, "seed")
        self.batch_size = check_int(batch_size, "batch_size", minimum=1)
        self.device = None if device is None else check_device(device)

    def select(self, model, pool, labeled_mask, budget, *, return_gains=False):
        """Pick `budget` unlabeled points.

        Args:
            model: nn.Module returning logits [n, C] or (logits, embedding).
            pool: [N, ...] inputs of every pool point, labeled or not (the Fisher strategies
                also take a map-style Dataset or a DataLoader over one, in pool order).
            labeled_mask: [N] bool (tensor or array), True where the point is labeled.
            budget: number of points to pick, 1 <= budget <= number of unlabeled points.
            return_gains: also return each pick's gain (below).
        Returns:
            [budget] int64 positions into `pool`: unique, all unlabeled, in pick order. With
            return_gains, (positions, gains): gains [budget] float64 on the CPU, the score each
            pick was chosen by, or None for a strategy without one (random, badge). Fisher
            strategies (fishermask, bait): the decrease of the trace ratio tr(M⁻¹F) the pick
            brought (select_batch's gains); entropy, margin, least_confidence: the uncertainty
            score the points were ranked by, larger first; coreset: the pick's distance to the
            nearest labeled or earlier pick (inf for a first pick without labeled points).
        """
        check_bool(return_gains, "return_gains")
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module (a trained network), got "
                            f"{type(model).__name__}")
        N = batches.num_samples(pool)
        if N is None:
            raise TypeError(f"pool must have a length (a Tensor, a map-style Dataset or a "
                            f"DataLoader over one), got {type(pool).__name__}")
        labeled_mask = check_mask(labeled_mask, N, "cpu")
        budget = check_budget(budget, int((~labeled_mask).sum()),
                              f"unlabeled points left in the pool of {N}")
        _check_pool_dtype(model, pool)
        view = PoolView(model, pool, labeled_mask, self.seed, self.batch_size,
                        model_device(model, self.device))
        with eval_mode(model):
            got = self.choose(view, budget)
        positions, gains = got if isinstance(got, Picks) else (got, None)
        positions = torch.as_tensor(positions).long().cpu()
        if positions.shape != (budget,) or len(positions.unique()) != budget:
            raise RuntimeError(f"{type(self).__name__}.choose returned {positions.tolist()}, "
                               f"not {budget} distinct positions")
        if gains is not None:
            gains = torch.as_tensor(gains).double().cpu()
            if gains.shape != (budget,):
                raise RuntimeError(f"{type(self).__name__}.choose returned gains of shape "
                                   f"{tuple(gains.shape)}, not [{budget}]")
        picks = view.unlabeled[positions]
        return (picks, gains) if return_gains else picks

    def choose(self, view, budget):
        """Return [budget] distinct int64 positions into `view.unlabeled`, or Picks(those
        positions, their gains [budget]) for a strategy whose picks have a score."""
        raise NotImplementedError


def _check_pool_dtype(model, pool):
    """TypeError unless a tensor pool fits the model's floating parameters: float images of
    their dtype (torch's own error is about mat1 and mat2), integers only for a model that
    embeds tokens (an nn.Embedding)."""
    dtype = model_dtype(model)
    if not isinstance(pool, torch.Tensor) or dtype is None or pool.dtype == dtype:
        return
    check_input_dtype(pool, dtype, "pool")
    tokens = any(isinstance(m, nn.Embedding) for m in model.modules())
    if not pool.is_floating_point() and not tokens:
        raise TypeError(f"pool is {pool.dtype} but the model takes {dtype} inputs; convert the "
                        f"images as for training, e.g. pool.to({dtype}) / 255 and the same "
                        f"normalisation")
