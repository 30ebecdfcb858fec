"""Selection across processes on torch.distributed (gloo on CPUs, NCCL with one GPU per rank).

    fishermask_ext.distributed.select_batch(local_unlabeled, budget, ..., group=None)

Every rank passes its own shard of the candidates; every rank gets the same global picks, those
of fishermask_ext.select_batch on the concatenation of the shards. See docs/SCALING.md for the
cost model and how to launch (torchrun).
"""
from .comm import RankFailed
from .select import select_batch
from .shard import shard_range

__all__ = ["select_batch", "shard_range", "RankFailed"]
