"""Steps A and B on a pool sharded across ranks: every rank builds the same mask."""
import torch
import torch.distributed as dist

from .._checks import check_int
from ..nn import batches
from ..nn.fisher import fisher_diagonal as local_fisher_diagonal, fisher_mask as local_fisher_mask
from .comm import comm_device, gather, guarded, require_group

__all__ = ["fisher_diagonal", "fisher_mask"]


def fisher_diagonal(model, local_data, *, n_samples=1024, seed=0, batch_size=256, device=None,
                    reference_order=False, group=None):
    """fishermask_ext.fisher_diagonal on the concatenation of every rank's `local_data` (its
    contiguous shard of the pool, in rank order), on every rank.

    The sample is the one a single process would draw from the whole pool (the same seeded
    permutation of the global N, or the first n_samples); each rank sums the samples that fall
    in its shard, and the sums are all-reduced. The result equals the single-process one up to
    the float rounding of sums taken in another grouping. Call it on every rank.
    """
    rank, _ = require_group(group)

    def local_share():
        n = batches.num_samples(local_data)
        if n is None:
            raise TypeError("local_data needs a length (a Tensor, a map-style Dataset or a "
                            "DataLoader over one) to draw the sample from")
        return n, check_int(n_samples, "n_samples", minimum=1)

    n_local, k = guarded(local_share, group, "sizing its shard")
    sizes = gather(n_local, group)
    N, start = sum(sizes), sum(sizes[:rank])
    k = min(k, N)
    chosen = torch.arange(k) if reference_order else \
        torch.randperm(N, generator=torch.Generator().manual_seed(seed))[:k].sort().values
    mine = chosen[(chosen >= start) & (chosen < start + n_local)] - start
    params = dict(model.named_parameters())

    def local_sum():
        if len(mine) == 0:
            return {name: torch.zeros_like(p) for name, p in params.items()}
        return local_fisher_diagonal(model, batches.take(local_data, mine), n_samples=len(mine),
                                     batch_size=batch_size, device=device, reference_order=True)

    fisher = guarded(local_sum, group, "computing its Fisher diagonal")
    flat = torch.cat([fisher[name].reshape(-1) for name in params])
    wire = flat.to(comm_device(group))
    dist.all_reduce(wire, group=group)
    flat = wire.to(flat.device)
    out, s = {}, 0
    for name, p in params.items():
        out[name] = flat[s:s + p.numel()].view(p.shape)
        s += p.numel()
    return out


def fisher_mask(model, local_data, *, pct_top=0.002, n_samples=1024, seed=0,
                always_include=None, batch_size=256, device=None, reference_order=False,
                group=None):
    """fishermask_ext.fisher_mask from the all-reduced Fisher diagonal (fisher_diagonal above):
    the same ParamMask on every rank."""
    diagonal = fisher_diagonal(model, local_data, n_samples=n_samples, seed=seed,
                               batch_size=batch_size, device=device,
                               reference_order=reference_order, group=group)
    return local_fisher_mask(model, None, pct_top=pct_top, always_include=always_include,
                             diagonal=diagonal)
