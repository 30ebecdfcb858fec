"""How a pool of N rows is cut into contiguous shards, one per rank."""
from .comm import require_group

__all__ = ["shard_range"]


def shard_range(n, group=None):
    """(start, stop) of this rank's contiguous share of n rows: the first n % world ranks get
    one row more, so shard sizes differ by at most one and concatenate in rank order."""
    rank, world = require_group(group)
    base, extra = divmod(int(n), world)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)
