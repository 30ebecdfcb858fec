"""The collectives fishermask_ext.distributed needs, on torch.distributed (gloo or NCCL): the
process-group check, agreement of every rank on shapes and options, errors raised on every rank
when one rank fails, and the per-step exchange of the greedy loop (ops/loop.py)."""
import time

import torch
import torch.distributed as dist

from ..ops.loop import NONE, Best

__all__ = ["RankFailed", "require_group", "comm_device", "gather", "guarded", "agree",
           "step_exchange"]


class RankFailed(RuntimeError):
    """Another rank failed; this one stops too instead of waiting for it."""


def require_group(group):
    """(rank, world size) of `group`, or a RuntimeError saying how to launch."""
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(
            "fishermask_ext.distributed needs an initialised torch.distributed process group: "
            "launch with `torchrun --nproc-per-node=<ranks> your_script.py` and call "
            "torch.distributed.init_process_group('gloo') (CPU) or ('nccl') with one GPU per "
            "rank (torch.cuda.set_device(local_rank)) first; for one process use "
            "fishermask_ext.select_batch")
    return dist.get_rank(group), dist.get_world_size(group)


def comm_device(group):
    """Where collective buffers live: the rank's GPU under NCCL, else the CPU."""
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def gather(obj, group):
    """Every rank's `obj` (picklable), in rank order, on every rank."""
    out = [None] * dist.get_world_size(group)
    dist.all_gather_object(out, obj, group=group)
    return out


def guarded(fn, group, what):
    """fn() on every rank, then one collective: if fn raised anywhere, every rank raises (the
    failing rank its own exception; the others the same type, naming that rank), so no rank
    is left waiting in a later collective for one that has stopped."""
    try:
        out, err = fn(), None
    except Exception as exc:              # re-raised below, after the others are told
        out, err = None, exc
    report = None if err is None else (type(err).__name__, str(err))
    failures = [(r, rep) for r, rep in enumerate(gather(report, group)) if rep is not None]
    if failures:
        if err is not None:
            raise err
        r, (kind, msg) = failures[0]
        cls = {"ValueError": ValueError, "TypeError": TypeError}.get(kind, RankFailed)
        raise cls(f"rank {r} failed while {what}: {msg}")
    return out


def agree(meta, group, keys):
    """Every rank's `meta` dict; a ValueError on every rank naming the first key in `keys` on
    which the ranks differ, with each rank's value."""
    metas = gather(meta, group)
    for key in keys:
        values = [m[key] for m in metas]
        if any(v != values[0] for v in values):
            per_rank = ", ".join(f"rank {r}: {v!r}" for r, v in enumerate(values))
            raise ValueError(f"the ranks disagree on {key} ({per_rank}); every rank must pass "
                             f"embeddings of one [C, D] and dtype and the same options")
    return metas


def step_exchange(group, C, D):
    """The `exchange` of ops.loop.greedy_loop across the ranks of `group`.

    Per step: one all_gather of (best score, its global index, ok) from every rank; the
    winner is the highest score, ties to the lowest global index (ops.loop.Best's order, so the
    picks are those of one process on the concatenated pool). Then one broadcast from the
    winner's rank of x_j [C, D], A_j and B_j [C, C] (float64), which every rank commits
    identically. A rank whose scoring raised sends ok = 0, and every rank stops."""
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    dev = comm_device(group)
    f64 = torch.float64

    def exchange(score):
        try:
            best, err = score(), None
        except Exception as exc:          # told to the others first, re-raised below
            best, err = NONE, exc
        t0 = time.perf_counter()
        try:
            return _exchange(best, err)
        finally:    # time in collectives, waiting for the slowest rank included
            exchange.seconds += time.perf_counter() - t0
            exchange.steps += 1

    def _exchange(best, err):
        mine = torch.tensor([best.score, float(best.index), 0.0 if err else 1.0], dtype=f64,
                            device=dev)
        table = [torch.empty_like(mine) for _ in range(world)]
        dist.all_gather(table, mine, group=group)
        rows = torch.stack(table).cpu().tolist()
        failed = [r for r, row in enumerate(rows) if row[2] == 0.0]
        if failed:
            if err is not None:
                raise err
            raise RankFailed(f"rank {failed[0]} failed during selection; every rank stops")
        bests = [Best(s, int(i)) for s, i, _ in rows]
        owner = max(range(world), key=lambda r: bests[r])
        win = bests[owner]
        if win.index < 0:
            return win
        buf = torch.empty(C * D + 2 * C * C, dtype=f64, device=dev)
        if owner == rank:
            buf.copy_(torch.cat([t.reshape(-1).to(dev) for t in best.payload]))
        src = dist.get_global_rank(group, owner) if group is not None else owner
        dist.broadcast(buf, src=src, group=group)
        win.payload = (buf[:C * D].view(C, D), buf[C * D:C * D + C * C].view(C, C),
                       buf[C * D + C * C:].view(C, C))
        return win

    exchange.seconds, exchange.steps = 0.0, 0
    return exchange
