"""Factored embeddings (docs/ALGORITHM.md, "Factored embeddings"): the same selection on the
factors and on the dense matrix, and a pool of 10⁶ candidates on one machine.

    python -m pytest benchmarks/bench_factored.py --benchmark-enable -s   # full sizes
    python -m pytest benchmarks/bench_factored.py                        # smoke pass (CI)

- dense vs factored, N = 20,000 (FISHERMASK_FACTORED_N to change it), C = 10, K = 200,
  float32, the two real mask shapes:
  FisherMask on the narrow ResNet-18 (d̄ = 128, D_r = 122, D = 1,402) and BAIT on a 512-wide
  penultimate layer (d̄ = 512, D_r = 0, D = 5,120). Same picks checked; the ratio, and the
  factored step's GFLOP/s and GB/s against this machine's float64 GEMM rate and copy rate.
- 10⁶ candidates of FisherMask's shape (float32, random factors), K = 200 (FISHERMASK_MILLION_K
  to change it), in a child process: total, initialisation (Fisher and A/B), per step, peak RSS.
Random factors: G, h̄ and R with the real shapes; the picks do not depend on the model.
"""
# What benchmarks/run.py prints before a full run (2-core machine, idle, estimated from the
# pieces timed while writing it): BAIT's dense selection dominates.
FULL_RUN_MINUTES = 45
import json
import os
import subprocess
import sys
import time

import pytest
import torch

import fishermask_ext as fm
from fishermask_ext import FactoredEmbeddings
from fishermask_ext.testing import subprocess_env

SHAPES = {"fishermask": dict(d=128, Dr=122), "bait": dict(d=512, Dr=0)}
FULL = dict(N=int(os.environ.get("FISHERMASK_FACTORED_N", 20000)), C=10, K=200)
SMOKE = dict(N=60, C=3, K=5)
SMOKE_SHAPES = {"fishermask": dict(d=6, Dr=5), "bait": dict(d=9, Dr=0)}


def random_factored(N, C, d, Dr, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)
    return FactoredEmbeddings(r(N, C, C), r(N, d), r(N, C, Dr) if Dr else None)


def _wall(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def _rates(smoke):
    """(float64 GEMM GFLOP/s, copy GB/s read+write) measured now, as bench_select does."""
    n = 256 if smoke else 2048
    a = torch.randn(n, n, dtype=torch.float64)
    a @ a
    _, t = _wall(lambda: a @ a)
    x = torch.randn(1 << (16 if smoke else 26))
    out = torch.empty_like(x)
    out.copy_(x)
    _, c = _wall(lambda: out.copy_(x))
    return 2 * n ** 3 / t / 1e9, 2 * x.numel() * 4 / c / 1e9


def step_figures(E, seconds):
    """(GFLOP/s, GB/s) of one factored step: 2·N·(C·d̄·2C + C·C·2C + C·D_r·2C) flops for W and
    Z, and one read of the factors."""
    N, C, _ = E.shape
    flops = 2 * N * 2 * C * (C * E.d_bar + C * C + C * E.d_rest)
    nbytes = sum(t.numel() * t.element_size() for _, t in E.factors)
    return flops / seconds / 1e9, nbytes / seconds / 1e9


def _dense_selection(E, K):
    """(picks, seconds) of select_batch on E's dense matrix (freed on return)."""
    X = E.dense()
    return _wall(lambda: fm.select_batch(X, K))


@pytest.mark.parametrize("mask", SHAPES)
def test_factored_vs_dense(benchmark, smoke, mask):
    s = SMOKE if smoke else FULL
    shape = (SMOKE_SHAPES if smoke else SHAPES)[mask]
    E = random_factored(s["N"], s["C"], shape["d"], shape["Dr"], seed=1)
    K = s["K"]
    benchmark.group = f"factored vs dense {mask} N={s['N']} C={s['C']} K={K}"
    picks = benchmark.pedantic(lambda: fm.select_batch(E, K), rounds=1, iterations=1)
    dense, dense_s = _dense_selection(E, K)
    assert picks.tolist() == dense.tolist()
    stats = getattr(benchmark, "stats", None)
    if stats is None:
        return
    factored_s = stats.stats.min
    eye = torch.eye(s["C"], dtype=torch.float64) * 0.1
    N, C, D = E.shape
    A = torch.zeros(N, C, C, dtype=torch.float64)
    B = torch.eye(C, dtype=torch.float64).repeat(N, 1, 1)
    UV = torch.randn(D, 2 * C, dtype=torch.float64) * 1e-3
    el = torch.ones(N, dtype=torch.bool)
    step = torch.ops.fishermask_ext.factored_step
    step(A, B, E.G, E.H, E.R, UV, 1.0, eye, eye, el, 1.0)
    _, step_s = _wall(lambda: step(A, B, E.G, E.H, E.R, UV, 1.0, eye, eye, el, 1.0))
    gflops, gbs = step_figures(E, step_s)
    gemm, copy = _rates(smoke)
    benchmark.extra_info.update(dense_s=dense_s, factored_s=factored_s,
                                ratio=dense_s / factored_s, step_s=step_s,
                                step_gflops=gflops, step_gbs=gbs, gemm_gflops=gemm,
                                copy_gbs=copy)
    print(f"\n{mask} N={N} C={C} D={D} K={K} float32, {torch.get_num_threads()} threads: "
          f"dense {dense_s:.1f} s | factored {factored_s:.1f} s = {dense_s / factored_s:.2f}x "
          f"faster; one factored step {step_s * 1e3:.1f} ms = {gflops:.1f} GFLOP/s "
          f"({gflops / gemm:.0%} of float64 GEMM {gemm:.1f}), factors read at {gbs:.1f} GB/s "
          f"({gbs / copy:.0%} of copy {copy:.1f})")


_CHILD = """
import json, resource, sys, time, torch
import fishermask_ext as fm
sys.path.insert(0, sys.argv[1])
from bench_factored import random_factored
N, K, d, Dr = (int(a) for a in sys.argv[2:6])
E = random_factored(N, 10, d, Dr, seed=2)
steps = []
class Clock:
    def __call__(self, t, n):
        steps.append(time.perf_counter())
from fishermask_ext.select import core
t0 = time.perf_counter()
from fishermask_ext.ops import loop
real = loop.greedy_loop
def timed(*a, **k):
    k["on_step"] = Clock()
    timed.start = time.perf_counter()
    return real(*a, **k)
core.greedy_loop = timed
picks = fm.select_batch(E, K)
total = time.perf_counter() - t0
first = steps[0] - timed.start          # A/B initialisation and the first scoring
print(json.dumps(dict(N=N, K=K, total=total, fisher=timed.start - t0, init=first,
                      step=(steps[-1] - steps[0]) / max(1, len(steps) - 1),
                      peak_rss_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                      picks=len(picks))))
"""


def test_million_candidates(smoke):
    """10⁶ FisherMask-shaped factored candidates (smoke: 2,000), K = 200, float32."""
    N = 2000 if smoke else 1_000_000
    K = 5 if smoke else int(os.environ.get("FISHERMASK_MILLION_K", 200))
    here = os.path.dirname(os.path.abspath(__file__))
    res = subprocess.run([sys.executable, "-c", _CHILD, here, str(N), str(K), "128", "122"],
                         capture_output=True, text=True, env=subprocess_env(),
                         timeout=None if not smoke else 600)
    assert res.returncode == 0, res.stderr[-3000:]
    fig = json.loads(res.stdout.strip().splitlines()[-1])
    assert fig["picks"] == K
    if not smoke:
        print(f"\n10^6 candidates: N={N} K={K} C=10 d̄=128 D_r=122 float32, "
              f"{torch.get_num_threads()} threads: total {fig['total']:.0f} s, Fisher "
              f"{fig['fisher']:.0f} s, A/B init {fig['init']:.0f} s, {fig['step']:.2f} s per "
              f"step, peak RSS {fig['peak_rss_gb']:.1f} GB; K = 1,000 extrapolated: "
              f"{(fig['fisher'] + fig['init'] + 1000 * fig['step']) / 60:.0f} min")
