"""Active-learning query strategies behind one interface.

    strategy = strategies.get("fishermask", seed=0, pct_top=0.01)
    picks = strategy.select(model, pool, labeled_mask, budget)   # [budget] int64 pool positions

`Strategy.select` checks its arguments, runs the model in eval mode and hands a `PoolView` to
`choose`, the one method a strategy overrides. Every strategy takes `seed` (same seed, same
picks), `batch_size` and `device` (where the model runs).
"""
import inspect
import numbers

import torch
from torch import nn

from .select import fisher_matrix, select_batch

__all__ = ["Strategy", "PoolView", "get", "available", "STRATEGIES"]


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
                if isinstance(out, (tuple, list)):
                    out, captured[:] = out[0], [out[1]]
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
        self.seed, self.batch_size = int(seed), int(batch_size)
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
        n_unlabeled = int((~labeled_mask).sum())
        if isinstance(budget, bool) or not isinstance(budget, numbers.Integral) or budget < 1:
            raise ValueError(f"budget must be an int >= 1, got {budget!r}")
        budget = int(budget)
        if budget > n_unlabeled:
            raise ValueError(f"budget {budget} exceeds the {n_unlabeled} unlabeled points left "
                             f"in the pool of {len(pool)}")
        device = self.device or next(model.parameters()).device
        view = PoolView(model, pool, labeled_mask, self.seed, self.batch_size, device)
        was_training = model.training
        model.eval()
        try:
            positions = torch.as_tensor(self.choose(view, budget)).long().cpu()
        finally:
            model.train(was_training)
        if positions.shape != (budget,) or len(positions.unique()) != budget:
            raise RuntimeError(f"{type(self).__name__}.choose returned {positions.tolist()}, "
                               f"not {budget} distinct positions")
        return view.unlabeled[positions]

    def choose(self, view, budget):
        """Return [budget] distinct int64 positions into `view.unlabeled`."""
        raise NotImplementedError


def _top(scores, budget):
    """Positions of the `budget` largest scores; ties go to the lowest position."""
    return torch.argsort(-scores, stable=True)[:budget]


class Random(Strategy):
    """Uniformly random unlabeled points."""

    def choose(self, view, budget):
        return torch.randperm(len(view.unlabeled), generator=view.generator)[:budget]


class Entropy(Strategy):
    """Largest predictive entropy -Σ p log p."""

    def choose(self, view, budget):
        p = view.probs()
        return _top(-(p * p.clamp_min(1e-12).log()).sum(1), budget)


class Margin(Strategy):
    """Smallest gap between the two most probable classes."""

    def choose(self, view, budget):
        top2 = view.probs().topk(2, dim=1).values
        return _top(top2[:, 1] - top2[:, 0], budget)


class LeastConfidence(Strategy):
    """Smallest probability of the predicted class."""

    def choose(self, view, budget):
        return _top(-view.probs().max(1).values, budget)


class CoreSet(Strategy):
    """k-center greedy on penultimate features (Sener & Savarese, 2018).

    Each pick is the unlabeled point farthest from every labeled and already picked point;
    without labeled points the first pick is random (seeded).
    """

    def choose(self, view, budget):
        feats = view.forward(torch.arange(len(view.pool)))[1].double()
        fu, fl = feats[view.unlabeled], feats[view.labeled]
        dist = torch.full((len(fu),), float("inf"), dtype=torch.float64)
        for s in range(0, len(fl), 1024):   # chunks keep the U x L distance block small
            dist = torch.minimum(dist, torch.cdist(fu, fl[s:s + 1024]).min(1).values)
        picks = []
        for _ in range(budget):
            j = int(dist.argmax()) if len(fl) or picks else \
                int(torch.randint(len(fu), (1,), generator=view.generator))
            picks.append(j)
            dist = torch.minimum(dist, (fu - fu[j]).norm(dim=1))
            dist[picks] = -1.0
        return torch.tensor(picks)


class Badge(Strategy):
    """k-means++ seeding on gradient embeddings g = (p - e_ŷ) ⊗ h (Ash et al., 2020).

    The C·H-dimensional g is never built: ‖g_i - g_j‖² = ‖a_i‖²‖h_i‖² + ‖a_j‖²‖h_j‖²
    - 2 (a_i·a_j)(h_i·h_j) with a = p - e_ŷ. The first centre is the largest ‖g‖, as in BADGE.
    """

    def choose(self, view, budget):
        p, h = (t.double() for t in view.forward(view.unlabeled))
        a = p.clone()
        a[torch.arange(len(a)), p.argmax(1)] -= 1.0
        sq = (a * a).sum(1) * (h * h).sum(1)
        d2 = torch.full_like(sq, float("inf"))
        picks = [int(sq.argmax())]
        while True:
            c = picks[-1]
            d2 = torch.minimum(d2, (sq + sq[c] - 2.0 * (a @ a[c]) * (h @ h[c])).clamp_min(0.0))
            d2[picks] = 0.0
            if len(picks) == budget:
                return torch.tensor(picks)
            if float(d2.sum()) > 0:
                picks.append(int(torch.multinomial(d2 / d2.sum(), 1, generator=view.generator)))
            else:   # every point left duplicates a centre: take them in random order
                rest = torch.ones(len(d2), dtype=torch.bool)
                rest[picks] = False
                rest = rest.nonzero().flatten()
                picks.append(int(rest[torch.randint(len(rest), (1,), generator=view.generator)]))


class FisherMask(Strategy):
    """FisherMask (Gul et al., 2024): steps A-E of ALGORITHM.md.

    A mask of the pct_top most informative parameters (Fisher diagonal on n_samples pool points,
    seeded), masked per-class gradient embeddings of every pool point, then the greedy Fisher
    trace-ratio batch with the labeled points' Fisher. Defaults follow the reference code:
    weighting "none", λ = 1, no backward steps. pct_top=None means 0.002, raised where that does
    not reach past the classifier layer (small models) to the fraction that adds 10 % of the
    classifier's entries from the body, the paper's proportion (narrow ResNet-18 at 0.002:
    D = 1,280 + 122).

    The reference's two switches (ALGORITHM.md, steps D and E): fish_init=False leaves the
    labeled points out of the initial M (F_L = 0; they still count in n_L and in the pool
    Fisher); fish_identity=True uses F = I, an A-optimal design, instead of the pool Fisher.
    parity=True rounds the greedy scores to float32 before each argmax, as the reference does
    (select_batch's parity mode).
    """

    def __init__(self, *, pct_top=None, weighting="none", lamb=1.0, backward_steps=0,
                 n_samples=1024, fish_init=True, fish_identity=False, parity=False,
                 backend="auto", **common):
        super().__init__(**common)
        for name, flag in (("fish_init", fish_init), ("fish_identity", fish_identity),
                           ("parity", parity)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be True or False, got {flag!r}")
        self.pct_top, self.weighting, self.lamb = pct_top, weighting, lamb
        self.backward_steps, self.n_samples, self.backend = backward_steps, n_samples, backend
        self.fish_init, self.fish_identity, self.parity = fish_init, fish_identity, parity

    def mask(self, view):
        """The ParamMask whose gradient entries form the embedding."""
        from .fisher import fisher_mask
        return fisher_mask(view.model, view.pool, pct_top=self.pct_top or _auto_pct(view.model),
                           n_samples=self.n_samples, seed=self.seed, batch_size=self.batch_size,
                           device=view.device)

    def choose(self, view, budget):
        from .embeddings import masked_grad_embeddings
        emb = masked_grad_embeddings(view.model, view.pool, self.mask(view),
                                     weighting=self.weighting, batch_size=self.batch_size,
                                     device=view.device, backend=self.backend)
        unlabeled = emb[view.unlabeled.to(emb.device)]
        labeled = emb[view.labeled.to(emb.device)]
        D = emb.shape[2]
        pool_fisher = torch.eye(D, dtype=torch.float64, device=emb.device) \
            if self.fish_identity else None
        if self.fish_init:
            given = dict(labeled=labeled)
        else:       # F_L = 0, but n_L still scales the picks and the pool Fisher has every point
            given = dict(labeled_fisher=torch.zeros(D, D, dtype=torch.float64, device=emb.device),
                         n_labeled=len(labeled))
            if pool_fisher is None:
                pool_fisher = fisher_matrix(emb)
        return select_batch(unlabeled, budget, pool_fisher=pool_fisher, lamb=self.lamb,
                            backward_steps=self.backward_steps, backend=self.backend,
                            parity=self.parity, **given)


class Bait(FisherMask):
    """BAIT (Ash et al., 2021): the FisherMask machinery with the mask = the last nn.Linear weight.

    Row weight sqrt_p (the true Fisher); defaults λ = 0.01 and backward_steps = 1 (pick 2K,
    prune back to K), as in the BAIT paper.
    """

    def __init__(self, *, weighting="sqrt_p", lamb=0.01, backward_steps=1, backend="auto",
                 **common):
        ignored = sorted({"pct_top", "n_samples"} & set(common))
        if ignored:
            raise TypeError(f"strategy 'bait' masks the whole classifier weight; "
                            f"{', '.join(ignored)} do not apply (use 'fishermask' for a mask)")
        super().__init__(weighting=weighting, lamb=lamb, backward_steps=backward_steps,
                         backend=backend, **common)

    def mask(self, view):
        from .masks import ParamMask
        name = _last_linear_weight(view.model)[0]
        numel = dict(view.model.named_parameters())[name].numel()
        return ParamMask(view.model, {name: torch.arange(numel)})


def _last_linear_weight(model):
    """(name, module) of the weight of the model's last nn.Linear."""
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise TypeError("the model has no nn.Linear classifier layer")
    name, mod = linears[-1]
    return (f"{name}.weight" if name else "weight"), mod


def _auto_pct(model):
    total = sum(p.numel() for p in model.parameters())
    last = _last_linear_weight(model)[1]
    n_last = sum(p.numel() for p in last.parameters())
    n_top = n_last + max(1, round(0.1 * n_last))
    return min(1.0, max(0.002, (n_top + 0.5) / total))


STRATEGIES = {"fishermask": FisherMask, "bait": Bait, "badge": Badge, "coreset": CoreSet,
              "entropy": Entropy, "margin": Margin, "least_confidence": LeastConfidence,
              "random": Random}


def available():
    """The registered strategy names."""
    return sorted(STRATEGIES)


def get(name, **options):
    """A new strategy by name; `options` go to its constructor (seed, batch_size, device, ...)."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; valid names: {', '.join(available())}")
    cls = STRATEGIES[name]
    valid = {p for c in cls.__mro__ if c is not object for p in
             inspect.signature(c.__init__).parameters if p not in ("self", "common")}
    unknown = sorted(set(options) - valid)
    if unknown:
        raise TypeError(f"strategy {name!r} has no option {', '.join(unknown)}; "
                        f"its options: {', '.join(sorted(valid))}")
    return cls(**options)
