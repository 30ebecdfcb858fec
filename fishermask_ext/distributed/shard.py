"""How a pool of N rows is cut into contiguous shards, one per rank."""
import torch.distributed as dist

from .comm import require_group

__all__ = ["shard_range", "local_rows", "sharded_world"]


def sharded_world():
    """True when this process is one rank of an initialised torch.distributed world of more
    than one process (as under torchrun): the strategies then shard their work across it."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def shard_range(n, group=None):
    """(start, stop) of this rank's contiguous share of n rows: the first n % world ranks get
    one row more, so shard sizes differ by at most one and concatenate in rank order."""
    rank, world = require_group(group)
    base, extra = divmod(int(n), world)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


def local_rows(pool, group=None):
    """This rank's shard (shard_range) of an [N, C, D] pool: a view of a tensor or numpy array,
    or of an embedding store a RowRange that reads only these rows from disk."""
    from ..select.rows import RowRange
    start, stop = shard_range(pool.shape[0], group)
    if hasattr(pool, "read_rows"):
        return RowRange(pool, start, stop)
    return pool[start:stop]
