"""Fisher-information strategies: FisherMask (steps A to E of docs/ALGORITHM.md) and BAIT."""
import torch
from torch import nn

from .._checks import check_bool, check_choice, check_fraction, check_int
from .. import distributed
from ..distributed import sharded_world
from ..nn import ParamMask, batches, fisher_mask, masked_grad_embeddings
from ..nn.factored import check_factored
from ..nn.hooks import WEIGHTINGS
from ..select import fisher_matrix, select_from_pool
from ..select.core import check_options
from .base import Picks, Strategy

__all__ = ["FisherMask", "ReferenceFisherMask", "Bait", "VARIANTS", "auto_pct"]

PCT_TOP = 0.002       # the paper's and the reference code's mask fraction
BODY_SHARE = 0.1      # where PCT_TOP does not reach past the classifier, the body adds about
                      # the paper's share (narrow ResNet-18 at PCT_TOP: 122 of 1,280 entries)


# The two variants of FisherMask and the switches they set; nothing else differs between them.
# "default" is the Fisher of docs/ALGORITHM.md: rows weighted by sqrt(p_c), so a confidently
# classified point adds little; step A on a seeded random sample; exact float64 argmax.
# "reference" is what the published code does: rows unweighted (it computes p and never uses
# it), scores rounded to float32 before each argmax, step A on the first pool images in storage
# order (a class-sorted pool makes that sample hold only a few classes).
VARIANTS = {
    "default": dict(weighting="sqrt_p", parity=False, reference_order=False),
    "reference": dict(weighting="none", parity=True, reference_order=True),
}


class FisherMask(Strategy):
    """FisherMask (Gul et al., 2024): steps A-E of docs/ALGORITHM.md.

    A mask of the pct_top most informative parameters (Fisher diagonal on n_samples pool points),
    masked per-class gradient embeddings of every pool point, then the greedy Fisher
    trace-ratio batch with the labeled points' Fisher. λ = 1, no backward steps.
    pct_top=None means 0.002 (narrow ResNet-18: D = 1,280 + 122, the published code's mask),
    raised only where 0.002 does not reach past the classifier layer (small models) to the
    fraction that adds 10 % of the classifier's entries from the body (auto_pct).

    variant picks three switches at once (VARIANTS); an explicit option overrides its variant:
    - "default", the true Fisher: weighting="sqrt_p", parity=False, reference_order=False;
    - "reference", the published code exactly: weighting="none" (rows not weighted by
      sqrt(p_c)), parity=True (scores rounded to float32 before each argmax, select_batch's
      parity mode), reference_order=True (step A on the first n_samples pool points in storage
      order instead of a sample seeded with `seed`).

    factored: "auto" (default) computes the embeddings as FactoredEmbeddings whenever the mask
    holds a whole nn.Linear classifier (masked_grad_embeddings; FisherMask's and BAIT's masks
    do on the package's models): the same picks, with about C× less memory and selection work
    and no backward pass for the classifier block; False forces the dense [N, C, D] tensor,
    True requires the factored one (ValueError otherwise).

    The reference's two other switches (docs/ALGORITHM.md, steps D and E) keep their reference
    values in both variants: fish_init=False leaves the labeled points out of the initial M
    (F_L = 0; they still count in n_L and in the pool Fisher); fish_identity=True uses F = I, an
    A-optimal design, instead of the pool Fisher.
    """

    def __init__(self, *, variant="default", pct_top=None, weighting=None, lamb=1.0,
                 backward_steps=0, n_samples=1024, reference_order=None, fish_init=True,
                 fish_identity=False, parity=None, backend="auto", factored="auto", **common):
        super().__init__(**common)
        check_choice(variant, "variant", tuple(VARIANTS))
        explicit = dict(weighting=weighting, parity=parity, reference_order=reference_order)
        # None means "as the variant says"; anything given explicitly wins.
        chosen = {k: VARIANTS[variant][k] if v is None else v for k, v in explicit.items()}
        # Every option is checked here, when the strategy is built (run_experiment builds each
        # strategy before it loads data): a bad value fails at once, not in the first query.
        for name, flag in (("fish_init", fish_init), ("fish_identity", fish_identity),
                           ("parity", chosen["parity"]),
                           ("reference_order", chosen["reference_order"])):
            check_bool(flag, name)
        if pct_top is not None:                  # None: auto_pct, the automatic fraction
            pct_top = check_fraction(pct_top, "pct_top")
        check_choice(chosen["weighting"], "weighting", WEIGHTINGS)
        check_options(lamb, backward_steps, chosen["parity"], False, False, backend)
        check_int(n_samples, "n_samples", minimum=1)
        self.factored = check_factored(factored)
        self.variant = variant
        self.pct_top, self.weighting, self.lamb = pct_top, chosen["weighting"], lamb
        self.backward_steps, self.n_samples, self.backend = backward_steps, n_samples, backend
        self.fish_init, self.fish_identity = fish_init, fish_identity
        self.parity, self.reference_order = chosen["parity"], chosen["reference_order"]

    def mask(self, view):
        """The ParamMask whose gradient entries form the embedding (in a sharded world, from
        the Fisher diagonal all-reduced over the ranks' slices: the same on every rank)."""
        kw = dict(pct_top=self.pct_top or auto_pct(view.model), n_samples=self.n_samples,
                  seed=self.seed, reference_order=self.reference_order,
                  batch_size=self.batch_size, device=view.device)
        if sharded_world():
            return distributed.fisher_mask(view.model, _my_slice(view), **kw)
        return fisher_mask(view.model, view.pool, **kw)

    def choose(self, view, budget):
        """Picks: positions into view.unlabeled and each pick's decrease of the trace ratio
        (the selection's gains, which it computes either way)."""
        mask = self.mask(view)
        if sharded_world():
            return Picks(*self._choose_sharded(view, budget, mask))
        picks, gains = self._pool_picks(view, budget, mask)
        return Picks(torch.searchsorted(view.unlabeled, picks.cpu()), gains)

    def _pool_picks(self, view, budget, mask):
        """One process: ([budget] positions into the POOL, their gains)."""
        emb = self._embed(view, view.pool, mask)
        # The pool is read in place: no copies of its labeled and unlabeled rows.
        # progress=None: a bar on a terminal once the selection has run a few seconds.
        return select_from_pool(emb, budget, view.labeled_mask.to(emb.device),
                                return_gains=True, progress=None,
                                **self._select_options(view, emb, lambda: fisher_matrix(emb)))

    def _choose_sharded(self, view, budget, mask):
        """Under torchrun (a process group of several ranks, every rank holding the same pool):
        each rank embeds only its contiguous slice of the pool, and selection runs sharded
        (fishermask_ext.distributed); every rank returns the same picks."""
        start, stop = distributed.shard_range(len(view.pool))
        emb = self._embed(view, _my_slice(view), mask)
        lab = view.labeled_mask[start:stop].to(emb.device)

        def full_fisher():        # mean of X_iᵀX_i over every rank's rows
            total = fisher_matrix(emb) * len(emb)
            torch.distributed.all_reduce(total)
            return total / len(view.pool)

        opts = self._select_options(view, emb, full_fisher)
        labeled = {} if "labeled_fisher" in opts else dict(labeled=emb[lab])
        # The ranks' unlabeled rows, concatenated in rank order, are view.unlabeled in order.
        return distributed.select_batch(emb[~lab], budget, **labeled, return_gains=True,
                                        **opts)

    def _embed(self, view, pool, mask):
        return masked_grad_embeddings(view.model, pool, mask, weighting=self.weighting,
                                      batch_size=self.batch_size, device=view.device,
                                      backend=self.backend, factored=self.factored)

    def _select_options(self, view, emb, full_fisher):
        """select_batch's options for this strategy: the reference's two switches
        (fish_identity: F = I; fish_init=False: F_L = 0 while n_L still scales the picks and
        the pool Fisher `full_fisher()` still has every point)."""
        D = emb.shape[2]
        opts = dict(lamb=self.lamb, backward_steps=self.backward_steps, backend=self.backend,
                    parity=self.parity, pool_fisher=None)
        if self.fish_identity:
            opts["pool_fisher"] = torch.eye(D, dtype=torch.float64, device=emb.device)
        if not self.fish_init:
            opts.update(labeled_fisher=torch.zeros(D, D, dtype=torch.float64, device=emb.device),
                        n_labeled=len(view.labeled))
            if opts["pool_fisher"] is None:
                opts["pool_fisher"] = full_fisher()
        return opts


class ReferenceFisherMask(FisherMask):
    """FisherMask(variant="reference") under its own name, "fishermask_reference", so that one
    experiment can run the published code's variant next to the default one. Every other option
    is FisherMask's (an explicit weighting, parity or reference_order still overrides)."""

    def __init__(self, **common):
        if "variant" in common:
            raise TypeError("strategy 'fishermask_reference' is FisherMask(variant='reference');"
                            " use 'fishermask' to choose another variant")
        super().__init__(variant="reference", **common)


def _my_slice(view):
    """This rank's contiguous slice of the pool (fishermask_ext.distributed.shard_range)."""
    start, stop = distributed.shard_range(len(view.pool))
    return batches.take(view.pool, torch.arange(start, stop))


class Bait(FisherMask):
    """BAIT (Ash et al., 2021): the FisherMask machinery with the mask = the last nn.Linear weight.

    Row weight sqrt_p (the true Fisher); defaults λ = 0.01 and backward_steps = 1 (pick 2K,
    prune back to K), as in the BAIT paper. Its mask is the classifier only, so with
    factored="auto" (FisherMask's option, the default) its embeddings cost one forward pass.
    """

    def __init__(self, *, weighting="sqrt_p", lamb=0.01, backward_steps=1, backend="auto",
                 **common):
        # Step A and its variants do not exist here: the mask is fixed, the switches explicit.
        ignored = sorted({"pct_top", "n_samples", "reference_order", "variant"} & set(common))
        if ignored:
            raise TypeError(f"strategy 'bait' masks the whole classifier weight; "
                            f"{', '.join(ignored)} do not apply (use 'fishermask' for a mask)")
        super().__init__(weighting=weighting, lamb=lamb, backward_steps=backward_steps,
                         backend=backend, **common)

    def mask(self, view):
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


def auto_pct(model):
    """The pct_top of FisherMask(pct_top=None): PCT_TOP wherever its mask reaches past the
    classifier layer (the paper's models: narrow ResNet-18, D = 1,402 at C = 10), else the
    fraction whose mask adds BODY_SHARE of the classifier's entries (at least one) from the rest
    of the network (small models, where PCT_TOP would not even cover the classifier)."""
    total = sum(p.numel() for p in model.parameters())
    last = _last_linear_weight(model)[1]
    n_last = sum(p.numel() for p in last.parameters())
    if int(PCT_TOP * total) > n_last:
        # Kept as it is even when the body's share is below BODY_SHARE (ResNet at C = 10: 122
        # of 1,280): raising it there would make pct_top=None differ from the published code.
        return PCT_TOP
    n_top = n_last + max(1, round(BODY_SHARE * n_last))
    # Half an entry above n_top / total: int(pct * total) then gives n_top despite rounding.
    return min(1.0, (n_top + 0.5) / total)
