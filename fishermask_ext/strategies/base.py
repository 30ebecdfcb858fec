"""The one interface every query strategy implements: `Strategy.select` is the template (checks,
eval mode, the mode restored), `choose` the override point, `PoolView` what `choose` sees."""
import torch
from torch import nn

from .._checks import check_budget, check_int
from ..nn.state import eval_mode, logits_of

__all__ = ["Strategy", "PoolView"]


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
        self.device = torch.device(device) if device is not None else None

    def select(self, model, pool, labeled_mask, budget):
        """Pick `budget` unlabeled points.

        Args:
            model: nn.Module returning logits [n, C] or (logits, embedding).
            pool: [N, ...] inputs of every pool point, labeled or not.
            labeled_mask: [N] bool, True where the point is labeled.
            budget: number of points to pick, 1 <= budget <= number of unlabeled points.
        Returns:
            [budget] int64 positions into `pool`: unique, all unlabeled.
        """
        labeled_mask = torch.as_tensor(labeled_mask, dtype=torch.bool).cpu()
        if labeled_mask.shape != (len(pool),):
            raise ValueError(f"labeled_mask must have shape [{len(pool)}] (one flag per pool "
                             f"point), got {tuple(labeled_mask.shape)}")
        budget = check_budget(budget, int((~labeled_mask).sum()),
                              f"unlabeled points left in the pool of {len(pool)}")
        _check_pool_dtype(model, pool)
        device = self.device or next(model.parameters()).device
        view = PoolView(model, pool, labeled_mask, self.seed, self.batch_size, device)
        with eval_mode(model):
            positions = torch.as_tensor(self.choose(view, budget)).long().cpu()
        if positions.shape != (budget,) or len(positions.unique()) != budget:
            raise RuntimeError(f"{type(self).__name__}.choose returned {positions.tolist()}, "
                               f"not {budget} distinct positions")
        return view.unlabeled[positions]

    def choose(self, view, budget):
        """Return [budget] distinct int64 positions into `view.unlabeled`."""
        raise NotImplementedError


def _check_pool_dtype(model, pool):
    """TypeError unless a tensor pool fits the model's floating parameters: float images of
    their dtype (torch's own error is about mat1 and mat2), integers only for a model that
    embeds tokens (an nn.Embedding)."""
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    if not isinstance(pool, torch.Tensor) or dtype is None or pool.dtype == dtype:
        return
    if pool.is_floating_point():
        raise TypeError(f"pool is {pool.dtype} but the model's parameters are {dtype}; pass "
                        f"pool.to({dtype}) (or the model in {pool.dtype})")
    if not any(isinstance(m, nn.Embedding) for m in model.modules()):
        raise TypeError(f"pool is {pool.dtype} but the model takes {dtype} inputs; convert the "
                        f"images as for training, e.g. pool.to({dtype}) / 255 and the same "
                        f"normalisation")
