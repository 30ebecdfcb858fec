"""Selection across processes (issue: pools past one process).

    python -m pytest benchmarks/bench_scale.py                       # smoke pass, tiny sizes (CI)
    python -m pytest benchmarks/bench_scale.py --benchmark-enable -s # the figures

The same pool, selected by 1 process × 2 threads (the native loop in one call) and by 2
processes × 1 thread (fishermask_ext.distributed over gloo on 127.0.0.1, half the pool each):
the selection is timed inside the processes between barriers (process start-up, imports and
the pool's generation excluded), with the time the ranks spend in the per-step collectives
(waiting for the slower rank included) as a share of the selection. Both must pick the same.
"""
import json
import os
import socket
import subprocess
import sys

import pytest

from fishermask_ext.testing import subprocess_env

WORKER = os.path.join(os.path.dirname(__file__), "_scale_worker.py")
FULL = dict(N=20000, C=10, D=256, K=100)        # 205 MB of float32, 2 GFLOP per step
SMOKE = dict(N=120, C=3, D=17, K=5)
LAYOUTS = [(1, 2), (2, 1)]                       # (processes, threads each): 2 cores either way
_RUNS = {}


def _world(world, threads, sizes, out):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(subprocess_env(), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
               WORLD_SIZE=str(world), GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS=str(threads))
    args = [str(sizes[k]) for k in ("N", "C", "D", "K")] + [str(threads), str(out)]
    procs = [subprocess.Popen([sys.executable, WORKER, *args], env=dict(env, RANK=str(r)))
             for r in range(world)]
    try:
        for p in procs:
            assert p.wait(timeout=1800) == 0
    finally:
        for p in procs:                       # only the pids started here
            if p.poll() is None:
                p.kill()
                p.wait()
    return [json.loads((out / f"{r}.json").read_text()) for r in range(world)]


@pytest.mark.parametrize("world, threads", LAYOUTS, ids=["1proc-2threads", "2procs-1thread"])
def test_select_world(benchmark, smoke, tmp_path, world, threads):
    sizes = SMOKE if smoke else FULL
    ranks = benchmark.pedantic(_world, args=(world, threads, sizes, tmp_path), rounds=1,
                               iterations=1)
    seconds = max(r["seconds"] for r in ranks)
    comm = max(r["comm"] for r in ranks)
    assert all(r["picks"] == ranks[0]["picks"] for r in ranks)
    bare = max(r.get("bare_step_ms", 0.0) for r in ranks)
    _RUNS[(world, threads)] = dict(seconds=seconds, comm=comm, picks=ranks[0]["picks"],
                                   bare=bare)
    benchmark.extra_info.update(sizes, processes=world, threads=threads, select_s=seconds,
                                comm_s=comm, comm_share=comm / seconds,
                                step_ms=1e3 * seconds / sizes["K"], bare_exchange_ms=bare)
    if len(_RUNS) == len(LAYOUTS):
        one, two = _RUNS[(1, 2)], _RUNS[(2, 1)]
        assert one["picks"] == two["picks"]
        print(f"\n[bench_scale] N={sizes['N']} C={sizes['C']} D={sizes['D']} K={sizes['K']} "
              f"float32: 1 proc x 2 threads {one['seconds']:.2f} s; 2 procs x 1 thread "
              f"{two['seconds']:.2f} s ({one['seconds'] / two['seconds']:.2f}x), collectives "
              f"{two['comm']:.2f} s = {100 * two['comm'] / two['seconds']:.1f} % of the "
              f"selection, {1e3 * two['comm'] / sizes['K']:.2f} ms per step (waiting for the "
              f"slower rank included); the collectives alone at C=10, D=1,402: "
              f"{two['bare']:.3f} ms per step")
