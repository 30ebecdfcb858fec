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

# What benchmarks/run.py prints before a full run: an estimate, not a timed run: two worlds of
# 100 steps over a 205 MB pool (about 2 GFLOP each, plus process start-ups), about 2 minutes,
# and the store case, whose two selections took 301 s and 149 s in the README's run at 085e19d,
# plus writing its 4.5 GB store.
FULL_RUN_MINUTES = 10
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


# Selection from an on-disk store larger than 4 GiB (the full run) against the same pool read
# into RAM, each in a child process whose own peak RSS (getrusage) is reported.
STORE_WORKER = os.path.join(os.path.dirname(__file__), "_store_worker.py")
STORE_FULL = dict(N=440_000, C=10, D=256, K=20)      # 4.5 GB of float32 (4.2 GiB)
STORE_SMOKE = dict(N=300, C=3, D=17, K=5)
_STORE_RUNS = {}


def _random_store(path, N, C, D, chunk_rows=4096):
    """A store of seeded randn rows, generated and written one chunk at a time (never whole)."""
    import torch

    from fishermask_ext import open_store
    store = open_store(path, mode="w", chunk_rows=chunk_rows)
    store.begin((N, C, D), torch.float32, {"source": "randn, chunk i seeded with i"})
    for i in range(store.n_chunks):
        a, b = store.chunk_bounds(i)
        g = torch.Generator().manual_seed(i)
        store.write_chunk(i, torch.randn(b - a, C, D, generator=g))
    store.close()
    return os.path.getsize(os.path.join(path, "embeddings.bin"))


def _select_child(path, K, mode, out):
    proc = subprocess.Popen([sys.executable, STORE_WORKER, str(path), str(K), mode, str(out)],
                            env=subprocess_env())
    try:
        assert proc.wait(timeout=3600) == 0
    finally:
        if proc.poll() is None:               # only the pid started here
            proc.kill()
            proc.wait()
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def random_store(smoke, tmp_path_factory):
    sizes = STORE_SMOKE if smoke else STORE_FULL
    path = tmp_path_factory.mktemp("store") / "pool.store"
    nbytes = _random_store(path, sizes["N"], sizes["C"], sizes["D"],
                           chunk_rows=64 if smoke else 4096)
    assert smoke or nbytes > 4 << 30, nbytes
    yield path, sizes, nbytes
    import shutil
    shutil.rmtree(path)                       # 4.5 GB: not left behind in the pytest tmp dir


@pytest.mark.parametrize("mode", ["ram", "store"])
def test_select_from_store(benchmark, random_store, tmp_path, mode):
    path, sizes, nbytes = random_store
    run = benchmark.pedantic(_select_child, args=(path, sizes["K"], mode, tmp_path / "r.json"),
                             rounds=1, iterations=1)
    _STORE_RUNS[mode] = run
    benchmark.extra_info.update(sizes, store_bytes=nbytes, select_s=run["seconds"],
                                peak_rss=run["peak_rss"], base_rss=run["base_rss"])
    if len(_STORE_RUNS) == 2:
        ram, store = _STORE_RUNS["ram"], _STORE_RUNS["store"]
        assert store["picks"] == ram["picks"] and store["gains"] == ram["gains"]
        gib = 1 << 30
        print(f"\n[bench_scale store] N={sizes['N']} C={sizes['C']} D={sizes['D']} "
              f"K={sizes['K']} float32, store {nbytes / 1e9:.2f} GB ({nbytes / gib:.2f} GiB), "
              f"1 % labeled: from the store {store['seconds']:.1f} s, peak RSS "
              f"{store['peak_rss'] / gib:.2f} GiB ({store['base_rss'] / gib:.2f} GiB before "
              f"selecting); in RAM {ram['seconds']:.1f} s, peak RSS {ram['peak_rss'] / gib:.2f} "
              f"GiB ({ram['base_rss'] / gib:.2f} GiB with the pool loaded); same picks and gains")
