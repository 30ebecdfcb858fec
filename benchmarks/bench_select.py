"""Greedy Fisher trace-ratio selection: native kernels vs the PyTorch twin vs the direct formula.

    python -m pytest benchmarks/bench_select.py --benchmark-enable   # N=5000, C=10, D=1402, K=50
    python -m pytest benchmarks/bench_select.py                      # smoke pass, tiny sizes (CI)

Every method's picks are checked against the native picks before its time counts. The ratio
table and the per-step bandwidth (bytes of X read per greedy step / step time, next to a plain
copy of X on the same machine) are printed at the end.
"""
import math

import pytest
import torch

import fishermask_ext as fm
from fishermask_ext.ops import reference

FULL = dict(N=5000, C=10, D=1402, K=50)
SMOKE = dict(N=40, C=3, D=17, K=4)
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def direct_select(X, K, lamb=1.0):
    """Step E as the reference code computes it: every score from scratch at every step."""
    N, C, D = X.shape
    F = fm.fisher_matrix(X).to(X.dtype)
    inv = torch.eye(D, dtype=X.dtype) / lamb          # no labeled points: P0 = I / λ
    Xt = X * math.sqrt(1.0)                            # sqrt(K / (n_L + K)) = 1 when n_L = 0
    eye = torch.eye(C, dtype=X.dtype)
    picked = []
    for _ in range(K):
        inner = torch.inverse(eye + Xt @ inv @ Xt.mT)
        trace = (Xt @ inv @ F @ inv @ Xt.mT @ inner).diagonal(dim1=-2, dim2=-1).sum(-1)
        trace[picked] = -math.inf
        j = int(trace.argmax())
        picked.append(j)
        x = Xt[j]
        inner_j = torch.inverse(eye + x @ inv @ x.T)
        inv = inv - inv @ x.T @ inner_j @ x @ inv
    return torch.tensor(picked)


@pytest.fixture(scope="module")
def sizes(smoke):
    return SMOKE if smoke else FULL


@pytest.fixture(scope="module")
def pools(sizes):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(sizes["N"], sizes["C"], sizes["D"], generator=g)
    return {name: X.to(dt) for name, dt in DTYPES.items()}


@pytest.fixture(scope="module")
def results(request):
    table = {}
    yield table
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    if tr is None or not table:
        return
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():     # fixture teardown output is captured
        for line in _summary(table):
            tr.write_line(line)


def _summary(table):
    yield ""
    yield f"selection summary (min time of each; ratios from this run; {torch.get_num_threads()} threads)"
    for dtype in DTYPES:
        r = table.get(dtype, {})
        if "native" in r:
            line = f"  {dtype}: native {r['native']:.3f} s"
            for other in ("twin", "direct"):
                if other in r:
                    line += f" | {other} {r[other]:.3f} s = {r[other] / r['native']:.1f}x native"
            yield line
        if "step" in r and "twin_step" in r:
            yield (f"  {dtype}: one greedy step: native {r['step'] * 1e3:.1f} ms | twin "
                   f"{r['twin_step'] * 1e3:.1f} ms = {r['twin_step'] / r['step']:.1f}x native")
        if "step" in r and "copy" in r:
            yield (f"  {dtype}: per-step pass reads X at {r['step_gbs']:.1f} GB/s; copy of X "
                   f"{r['copy'] * 1e3:.1f} ms ({r['copy_gbs']:.1f} GB/s read+write) -> "
                   f"{r['step_gbs'] / r['copy_gbs']:.0%} of copy throughput")


def _time(benchmark, fn, rounds):
    out = benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=0)
    stats = getattr(benchmark, "stats", None)
    return out, (stats.stats.min if stats is not None else None)


@pytest.fixture(scope="module")
def native_picks(pools, sizes):
    return {name: fm.select_batch(X, sizes["K"], backend="native") for name, X in pools.items()}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", ["native", "twin", "direct"])
def test_select(benchmark, pools, sizes, native_picks, results, dtype, method):
    X, K = pools[dtype], sizes["K"]
    benchmark.group = f"select {dtype} N={sizes['N']} C={sizes['C']} D={sizes['D']} K={K}"
    fn = {"native": lambda: fm.select_batch(X, K, backend="native"),
          "twin": lambda: fm.select_batch(X, K, backend="torch"),
          "direct": lambda: direct_select(X, K)}[method]
    picks, seconds = _time(benchmark, fn, rounds=1 if method == "direct" else 3)
    if dtype == "float64":
        assert picks.tolist() == native_picks[dtype].tolist()
    else:   # float32 products: compare the picked sets' overlap, exact order is not promised
        assert len(set(picks.tolist()) & set(native_picks[dtype].tolist())) >= 0.9 * K
    if seconds is not None:
        results.setdefault(dtype, {})[method] = seconds


@pytest.mark.parametrize("dtype", DTYPES)
def test_step_bandwidth(benchmark, pools, sizes, results, dtype):
    """One native greedy step (reads X once) against a plain copy of X."""
    X = pools[dtype]
    N, C, D = X.shape
    A, B = reference._init_scores(X, torch.eye(D, dtype=torch.float64),
                                  torch.eye(D, dtype=torch.float64), 1.0, 4096)
    UV = torch.randn(D, 2 * C, dtype=X.dtype) * 0.01
    eye = torch.eye(C, dtype=torch.float64) * 0.5
    eligible = torch.ones(N, dtype=torch.bool)
    step = torch.ops.fishermask_ext.trace_ratio_step
    benchmark.group = f"per-step pass {dtype}"
    scores, _ = step(A.clone(), B.clone(), X, UV, 1.0, eye, eye, eligible, 1.0)
    ref, _ = reference.trace_ratio_step(A.clone(), B.clone(), X, UV, 1.0, eye, eye, eligible, 1.0)
    tol = dict(rtol=1e-10, atol=1e-12) if X.dtype == torch.float64 else dict(rtol=1e-4, atol=1e-8)
    torch.testing.assert_close(scores, ref, **tol)
    _, seconds = _time(benchmark, lambda: step(A, B, X, UV, 1.0, eye, eye, eligible, 1.0), 5)
    out = torch.empty_like(X)
    copy = min(_wall(lambda: out.copy_(X)) for _ in range(5))
    twin = min(_wall(lambda: reference.trace_ratio_step(A, B, X, UV, 1.0, eye, eye, eligible, 1.0))
               for _ in range(3))
    nbytes = X.numel() * X.element_size()
    if seconds is not None:
        benchmark.extra_info["GB/s"] = nbytes / seconds / 1e9
        results.setdefault(dtype, {}).update(step=seconds, step_gbs=nbytes / seconds / 1e9,
                                             copy=copy, copy_gbs=2 * nbytes / copy / 1e9,
                                             twin_step=twin)


def _wall(fn):
    import time
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t
