"""Greedy Fisher trace-ratio selection: native kernels vs the PyTorch twin vs the direct formula.

    python -m pytest benchmarks/bench_select.py --benchmark-enable   # full sizes (about 40 min)
    python -m pytest benchmarks/bench_select.py                      # smoke pass, tiny sizes (CI)

Three cases:
- the classic one, N = 5000, C = 10, D = 1402, K = 50 (K·C < D): native vs twin vs the direct
  formula (fishermask_ext.testing.direct_select in the dtype of X, as the reference computes);
- the classic one in float32 at N/4 and N/2 as well: time against pool size per method (the plot
  benchmarks/run.py draws);
- a real-scale one, N = 20000, C = 10, D = 1402, K = 500, float32 (K·C = 3.6·D, where float32
  arithmetic would lose the argmax): native vs twin, the agreement of float32 picks with float64
  picks of the same values, and the step's achieved GFLOP/s and GB/s against this machine's
  measured float64 GEMM rate and copy bandwidth.
Every method's picks are checked before its time counts; the summary is printed at the end.
"""
# What benchmarks/run.py prints before a full run: run 4 (benchmarks/RESULTS-select.md) took
# 59.6 minutes on the 2-core AVX2 machine; the pool-size case adds about 8 (its N/4 and N/2
# calls scaled linearly from run 4's N = 5,000 float32 times: 3 native, 3 twin, 1 direct each).
FULL_RUN_MINUTES = 68
import time

import pytest
import torch

import fishermask_ext as fm
from fishermask_ext.ops import reference
from fishermask_ext.ops.sizes import BLOCK
from fishermask_ext.testing import direct_select, greedy_terms, tol

FULL = dict(N=5000, C=10, D=1402, K=50)
SMOKE = dict(N=40, C=3, D=17, K=4)
REAL = dict(N=20000, C=10, D=1402, K=500)
REAL_SMOKE = dict(N=60, C=3, D=10, K=20)      # K·C = 6·D, as in the real case
DTYPES = {"float32": torch.float32, "float64": torch.float64}


@pytest.fixture(scope="module")
def sizes(smoke):
    return SMOKE if smoke else FULL


@pytest.fixture(scope="module")
def real_sizes(smoke):
    return REAL_SMOKE if smoke else REAL


def _pool(s, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(s["N"], s["C"], s["D"], generator=g)


@pytest.fixture(scope="module")
def pools(sizes):
    X = _pool(sizes)                      # float32 values, exact in float64 too
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
    yield (f"selection summary (min time of each; ratios from this run; "
           f"{torch.get_num_threads()} threads)")
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
        if "step" in r and "copy_gbs" in r:
            yield (f"  {dtype}: per-step pass reads X at {r['step_gbs']:.1f} GB/s and runs "
                   f"{r['step_gflops']:.1f} GFLOP/s; copy of X {r['copy_gbs']:.1f} GB/s "
                   f"(read+write), float64 GEMM {r['gemm_gflops']:.1f} GFLOP/s")
    real = table.get("real")
    if real:
        yield (f"  real scale {real['case']}: native {real['native']:.1f} s | twin "
               f"{real['twin']:.1f} s = {real['twin'] / real['native']:.1f}x native; float32 "
               f"picks == float64 picks: {real['agree']}/{real['K']} in order "
               f"(identical: {real['identical']})")
        yield (f"  real scale step: {real['step'] * 1e3:.1f} ms, {real['step_gflops']:.1f} "
               f"GFLOP/s ({real['step_gflops'] / real['gemm_gflops']:.0%} of float64 GEMM "
               f"{real['gemm_gflops']:.1f}), X read at {real['step_gbs']:.1f} GB/s "
               f"({real['step_gbs'] / real['copy_gbs']:.0%} of copy {real['copy_gbs']:.1f})")


def _time(benchmark, fn, rounds):
    out = benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=0)
    stats = getattr(benchmark, "stats", None)
    return out, (stats.stats.min if stats is not None else None)


def _wall(fn, repeat=1):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _gemm_gflops(smoke):
    """This machine's attainable float64 FMA rate: a square float64 GEMM (the best of 3), of
    side 2048 (256 at smoke sizes, where the figure only exercises the code)."""
    n = 256 if smoke else 2048
    a = torch.randn(n, n, dtype=torch.float64)
    a @ a
    return 2 * n ** 3 / _wall(lambda: a @ a, 3) / 1e9


@pytest.fixture(scope="module")
def native_picks(pools, sizes):
    return {name: fm.select_batch(X, sizes["K"], backend="native") for name, X in pools.items()}


METHODS = ("native", "twin", "direct")


def _call(method, X, K):
    """The whole selection by `method` as a zero-argument function."""
    return {"native": lambda: fm.select_batch(X, K, backend="native"),
            "twin": lambda: fm.select_batch(X, K, backend="torch"),
            "direct": lambda: direct_select(X, K, dtype=X.dtype)}[method]


def _check_picks(picks, method, X, K, float64_picks, float32_native):
    """Every method's picks before its time counts."""
    picks = list(picks.tolist() if isinstance(picks, torch.Tensor) else picks)
    if method == "direct" and X.dtype == torch.float32:
        # float32 arithmetic (the reference's): exact only up to float32 rounding of the scores
        assert len(set(picks) & set(float32_native)) >= 0.9 * K
    else:   # float32 is storage: the float64 picks, exactly
        assert picks == float64_picks


def _tag(benchmark, method, X, K):
    """What benchmarks/run.py plots: time against pool size, one line per method and dtype."""
    N, C, D = X.shape
    benchmark.extra_info.update(method=method, dtype=str(X.dtype).replace("torch.", ""),
                                pool_size=N, C=C, D=D, K=K)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", METHODS)
def test_select(benchmark, pools, sizes, native_picks, results, dtype, method):
    X, K = pools[dtype], sizes["K"]
    benchmark.group = f"select {dtype} N={sizes['N']} C={sizes['C']} D={sizes['D']} K={K}"
    _tag(benchmark, method, X, K)
    picks, seconds = _time(benchmark, _call(method, X, K), rounds=1 if method == "direct" else 3)
    _check_picks(picks, method, X, K, native_picks["float64"].tolist(),
                 native_picks[dtype].tolist())
    if seconds is not None:
        results.setdefault(dtype, {})[method] = seconds


@pytest.mark.parametrize("share", [4, 2], ids=["N/4", "N/2"])
@pytest.mark.parametrize("method", METHODS)
def test_select_pool_size(benchmark, sizes, method, share):
    """float32 at a quarter and a half of the classic case's N (same C, D, K): with
    test_select's float32 row, three pool sizes per method for the time-vs-pool-size plot."""
    s = dict(sizes, N=sizes["N"] // share)
    X, K = _pool(s, seed=3), s["K"]
    benchmark.group = f"select float32 by pool size C={s['C']} D={s['D']} K={K}"
    _tag(benchmark, method, X, K)
    picks, _ = _time(benchmark, _call(method, X, K), rounds=1 if method == "direct" else 3)
    native32 = fm.select_batch(X, K, backend="native").tolist()
    _check_picks(picks, method, X, K, fm.select_batch(X.double(), K, backend="native").tolist(),
                 native32)


def _step_case(X):
    """Arguments of one greedy step over X with a modest update, and their score check."""
    N, C, D = X.shape
    eye_D = torch.eye(D, dtype=torch.float64)
    A, B = reference.trace_ratio_init(X, eye_D, eye_D, 1.0, 4096, BLOCK)
    UV = torch.randn(D, 2 * C, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    UV *= 0.01
    eye = torch.eye(C, dtype=torch.float64) * 0.5
    return A, B, UV, eye, torch.ones(N, dtype=torch.bool)


def _step_rates(X, seconds):
    """(GB/s of X read, GFLOP/s) of one step: W, Z = X·[u v] is 2·N·C·D·2C flops."""
    N, C, D = X.shape
    return X.numel() * X.element_size() / seconds / 1e9, 2 * N * C * D * 2 * C / seconds / 1e9


@pytest.mark.parametrize("dtype", DTYPES)
def test_step_bandwidth(benchmark, pools, results, smoke, dtype):
    """One native greedy step (reads X once) against a plain copy of X and a float64 GEMM."""
    X = pools[dtype]
    A, B, UV, eye, eligible = _step_case(X)
    step = torch.ops.fishermask_ext.trace_ratio_step
    benchmark.group = f"per-step pass {dtype}"
    scores, _ = step(A.clone(), B.clone(), X, UV, 1.0, eye, eye, eligible, 1.0)
    ref, _ = reference.trace_ratio_step(A.clone(), B.clone(), X, UV, 1.0, eye, eye, eligible, 1.0)
    _, C, D = X.shape
    torch.testing.assert_close(scores, ref, **tol(torch.float64, terms=greedy_terms(D, C),
                                                  magnitude=ref))
    _, seconds = _time(benchmark, lambda: step(A, B, X, UV, 1.0, eye, eye, eligible, 1.0), 5)
    out = torch.empty_like(X)
    copy = _wall(lambda: out.copy_(X), 5)
    twin = _wall(lambda: reference.trace_ratio_step(A, B, X, UV, 1.0, eye, eye, eligible, 1.0), 3)
    if seconds is not None:
        gbs, gflops = _step_rates(X, seconds)
        benchmark.extra_info.update({"GB/s": gbs, "GFLOP/s": gflops})
        results.setdefault(dtype, {}).update(
            step=seconds, step_gbs=gbs, step_gflops=gflops, twin_step=twin,
            copy_gbs=2 * X.numel() * X.element_size() / copy / 1e9,
            gemm_gflops=_gemm_gflops(smoke))


def test_real_scale(benchmark, real_sizes, results, smoke):
    """K·C far past D, float32 storage: native vs twin, float32 picks vs float64 picks."""
    s = real_sizes
    X = _pool(s, seed=2)
    K = s["K"]
    benchmark.group = f"real scale float32 N={s['N']} C={s['C']} D={s['D']} K={K}"
    picks, seconds = _time(benchmark, lambda: fm.select_batch(X, K, backend="native"), 1)
    picks = picks.tolist()
    twin = []
    twin_seconds = _wall(lambda: twin.append(fm.select_batch(X, K, backend="torch")))
    assert twin[0].tolist() == picks
    f64 = fm.select_batch(X.double(), K, backend="native").tolist()
    agree = next((t for t, (a, b) in enumerate(zip(picks, f64)) if a != b), K)
    assert picks == f64, f"float32 picks leave the float64 ones at pick {agree}"
    A, B, UV, eye, eligible = _step_case(X)
    step = torch.ops.fishermask_ext.trace_ratio_step
    step_s = _wall(lambda: step(A, B, X, UV, 1.0, eye, eye, eligible, 1.0), 3)
    out = torch.empty_like(X)
    copy = _wall(lambda: out.copy_(X), 3)
    if seconds is not None:
        gbs, gflops = _step_rates(X, step_s)
        results["real"] = dict(
            case=f"N={s['N']} C={s['C']} D={s['D']} K={K}", native=seconds, twin=twin_seconds,
            agree=agree, K=K, identical=picks == f64, step=step_s, step_gbs=gbs,
            step_gflops=gflops, gemm_gflops=_gemm_gflops(smoke),
            copy_gbs=2 * X.numel() * X.element_size() / copy / 1e9)
