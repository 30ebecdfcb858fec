"""Selection across processes on torch.distributed (gloo on CPUs, NCCL with one GPU per rank).

    fishermask_ext.distributed.select_batch(local_unlabeled, budget, ..., group=None)

Every rank passes its own shard of the candidates; every rank gets the same global picks, those
of fishermask_ext.select_batch on the concatenation of the shards. `fisher_diagonal` and
`fisher_mask` (steps A, B) all-reduce the Fisher diagonal so every rank builds the same mask. See docs/SCALING.md for the
cost model and how to launch (torchrun).
"""
from .comm import RankFailed
from .fisher import fisher_diagonal, fisher_mask
from .select import select_batch
from .shard import local_rows, shard_range, sharded_world

__all__ = ["select_batch", "fisher_diagonal", "fisher_mask", "shard_range", "local_rows",
           "sharded_world", "RankFailed"]
