"""One rank of benchmarks/bench_scale.py's selection worlds: the same seeded pool on every rank,
this rank's contiguous shard, the selection timed between barriers. Writes <out>/<rank>.json."""
import datetime
import json
import os
import sys
import time

import torch
import torch.distributed as dist

import fishermask_ext as fm
from fishermask_ext import distributed as fmd


def _bare_exchange_ms(world, C, D, reps=200):
    """Milliseconds of one step's collectives alone, ranks already in step: the all_gather of
    (score, index, ok) and the broadcast of x_j, A_j, B_j at the real scale C=10, D=1,402."""
    mine = torch.zeros(3, dtype=torch.float64)
    table = [torch.empty_like(mine) for _ in range(world)]
    buf = torch.zeros(C * D + 2 * C * C, dtype=torch.float64)
    dist.barrier()
    t0 = time.perf_counter()
    for i in range(reps):
        dist.all_gather(table, mine)
        dist.broadcast(buf, src=i % world)
    return 1e3 * (time.perf_counter() - t0) / reps


def main():
    N, C, D, K, threads, out = (*map(int, sys.argv[1:6]), sys.argv[6])
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    torch.set_num_threads(threads)
    X = torch.randn(N, C, D, generator=torch.Generator().manual_seed(0))
    if world == 1:     # one process: the native loop in one call
        fm.select_batch(X[:min(N, 64)], 2)                       # warm-up (thread pools)
        t0 = time.perf_counter()
        picks = fm.select_batch(X, K)
        result = dict(seconds=time.perf_counter() - t0, picks=picks.tolist(), comm=0.0, steps=K)
    else:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{os.environ['MASTER_PORT']}",
                                rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=120))
        start, stop = fmd.shard_range(N)
        shard = X[start:stop].clone()
        del X
        fmd.select_batch(shard[:min(len(shard), 32)], 2)        # warm-up (and the connections)
        dist.barrier()
        t0 = time.perf_counter()
        picks = fmd.select_batch(shard, K)
        dist.barrier()
        stats = fmd.select.LAST_EXCHANGE
        result = dict(seconds=time.perf_counter() - t0, picks=picks.tolist(),
                      comm=stats["seconds"], steps=stats["steps"],
                      bare_step_ms=_bare_exchange_ms(world, C=10, D=1402))
    with open(os.path.join(out, f"{rank}.json"), "w") as f:
        json.dump(result, f)
    if world > 1:      # gloo's threads torn down at exit without this can abort the process
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
