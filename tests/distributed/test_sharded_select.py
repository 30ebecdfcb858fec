"""fishermask_ext.distributed.select_batch in worlds of 2 and 3 gloo processes on 127.0.0.1:
the picks equal one process's on the concatenated pool; failures and mismatches raise on every
rank within a bounded time. Every process is started here and only those are killed, by pid."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from fishermask_ext.testing import gains_tol, subprocess_env

pytestmark = pytest.mark.slow     # gloo worlds of 2 and 3 processes

WORKER = os.path.join(os.path.dirname(__file__), "_worker.py")
TIMEOUT = 90          # seconds for a whole world, start-up included (2 shared cores)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_world(world, scenario, tmp_path, **args):
    """Start `world` ranks, wait for all (killing our own pids after TIMEOUT); per-rank results
    and return codes."""
    env = dict(subprocess_env(), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()),
               WORLD_SIZE=str(world), GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1")
    logs = [open(tmp_path / f"{r}.log", "wb") for r in range(world)]
    procs = [subprocess.Popen([sys.executable, WORKER, scenario, str(tmp_path), json.dumps(args)],
                              env=dict(env, RANK=str(r)), stdout=logs[r],
                              stderr=subprocess.STDOUT) for r in range(world)]
    deadline = time.monotonic() + TIMEOUT
    codes = []
    try:
        for p in procs:
            codes.append(p.wait(timeout=max(1, deadline - time.monotonic())))
    finally:
        for p in procs:                   # only the pids this test started
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()
        for f in logs:
            f.close()
    results = {}
    for r, p in enumerate(procs):
        path = tmp_path / f"{r}.json"
        # A rank that wrote nothing shows up as None; its output is printed for the failure.
        results[r] = json.loads(path.read_text()) if path.exists() else None
        if results[r] is None:
            print(f"rank {r} output:", (tmp_path / f"{r}.log").read_text(errors="replace")[-3000:])
    return results, codes


def _assert_gains(case, **sizes):
    """A rank's gains equal one process's (other sum orders), within gains_tol."""
    want, twin = (torch.tensor(case[k], dtype=torch.float64) for k in ("want_gains", "twin_gains"))
    torch.testing.assert_close(torch.tensor(case["gains"], dtype=torch.float64), want,
                               **gains_tol(want, twin, **sizes))


@pytest.mark.parametrize("world, sizes, lab_sizes", [
    (2, [23, 18], [4, 2]),           # uneven shards
    (3, [9, 0, 30], [0, 3, 3]),      # an empty candidate shard and an empty labeled shard
], ids=["2-ranks", "3-ranks-one-empty"])
def test_picks_equal_single_process(world, sizes, lab_sizes, tmp_path):
    results, codes = run_world(world, "equal", tmp_path, sizes=sizes, lab_sizes=lab_sizes)
    assert codes == [0] * world, results
    for r in range(world):
        assert "ok" in results[r], results[r]
        for case in results[r]["ok"]:
            assert case["got"] == case["want"], (r, case["case"])
            _assert_gains(case, D=7, C=3, steps=9 * (2 * case["case"][1] + 1))   # K = 9
    assert results[0]["ok"] == results[world - 1]["ok"]     # identical on every rank
    assert len(results[0]["ok"]) == 8                       # dtypes × b × labeled


def test_factored_shards_pick_what_one_process_picks_on_the_dense_pool(tmp_path):
    results, codes = run_world(2, "factored_equal", tmp_path, sizes=[17, 12])
    assert codes == [0, 0], results
    for r in range(2):
        (case,) = results[r]["ok"]
        assert case["got"] == case["want"]
        _assert_gains(case, D=3 * 4 + 2, C=3, steps=7 * 3)      # K = 7, one backward step


@pytest.mark.parametrize("die", [False, True], ids=["raises", "dies"])
def test_a_failing_rank_stops_the_others(die, tmp_path):
    start = time.monotonic()
    results, codes = run_world(3, "failing", tmp_path, die=die)
    assert time.monotonic() - start < TIMEOUT                  # nobody hung until killed
    if die:
        assert codes[1] == 3 and results[1] is None
    else:
        assert results[1]["error"] == "OSError" and "injected" in results[1]["message"]
    for r in (0, 2):
        assert results[r] is not None and "error" in results[r], results[r]
        if not die:
            assert results[r]["error"] == "RankFailed"
            assert "rank 1 failed" in results[r]["message"]


def test_mismatched_D_raises_on_every_rank(tmp_path):
    results, codes = run_world(2, "mismatch", tmp_path)
    for r in range(2):
        assert results[r]["error"] == "ValueError", results[r]
        assert "disagree on D" in results[r]["message"]
        assert "rank 0: 7, rank 1: 8" in results[r]["message"]


def test_strategies_under_a_process_group_pick_as_one_process(tmp_path):
    """fishermask (sharded step A and embeddings) and bait, as the driver calls them, in a world
    of 2: each rank embeds only its slice, and the picks equal one process's."""
    results, codes = run_world(2, "strategy", tmp_path)
    for r in range(2):
        assert "ok" in results[r], results[r]
        assert results[r]["ok"]["got"] == results[r]["ok"]["alone"]
        assert all(len(set(p)) == 6 for p in results[r]["ok"]["got"].values())


def test_without_process_group_says_how_to_launch():
    from fishermask_ext import distributed as fmd
    with pytest.raises(RuntimeError, match="torchrun"):
        fmd.select_batch(torch.randn(4, 2, 3), 2)
