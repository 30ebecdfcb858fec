"""GPU figures at real scale (CUDA; without CUDA only the smoke sizes run, on the CPU, so that
`benchmarks/gpu_check.sh --dry-run` and CI exercise this file).

    python -m pytest benchmarks/bench_gpu.py --benchmark-enable   # what benchmarks/gpu_check.sh runs

- the device's measured copy rate (device to device, GB/s) and float64 GEMM rate (GFLOP/s),
  against which every figure below is stated;
- selection, N = 50,000, C = 10, D = 1,402, K = 1,000 (K·C = 7·D), float32 and float64: native
  whole call; float32 picks must equal float64 picks; one greedy step's bytes and FLOPs as counted
  (fishermask_ext/select/counts.py, step_counts: the W/Z producer and the update-and-score
  kernel of docs/SCALING.md, with the products' round trip between them), its
  achieved GB/s and GFLOP/s, and those as fractions of the copy and GEMM rates; the twin's per-step time on the same pool (K = 50) for the ratio;
- embeddings, the narrow ResNet-18 on 50,000 random 3x32x32 images, D = 1,402: step A (the
  Fisher mask on 1,024 images) and step C (masked_grad_embeddings), images per second.
FISHERMASK_BENCH_JSON=path writes every figure there as JSON.
"""
import json
import os
import time

import pytest
import torch

import fishermask_ext as fm
from fishermask_ext.bench import device_rates
from fishermask_ext.ops import reference
from fishermask_ext.select.counts import step_counts
from fishermask_ext.ops.sizes import BLOCK

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

SEL = dict(N=50_000, C=10, D=1402, K=1000)
SEL_SMOKE = dict(N=300, C=10, D=60, K=20)
EMB = dict(N=50_000, fisher=1024)
EMB_SMOKE = dict(N=64, fisher=32)
FIGURES = {}


@pytest.fixture(scope="module", autouse=True)
def write_figures():
    yield
    path = os.environ.get("FISHERMASK_BENCH_JSON")
    if path and FIGURES:
        with open(path, "w") as f:
            name = torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu"
            json.dump({"device": name, "torch": torch.__version__,
                       **FIGURES}, f, indent=2)


@pytest.fixture
def sizes(smoke):
    """True for the smoke sizes; real sizes need CUDA."""
    if not smoke and DEVICE != "cuda":
        pytest.skip("the real sizes need CUDA")
    return smoke


def _sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def _cuda_time(fn, repeat=1):
    """Best wall time of fn() with the device synchronised around it."""
    best, out = float("inf"), None
    for _ in range(repeat):
        _sync()
        t = time.perf_counter()
        out = fn()
        _sync()
        best = min(best, time.perf_counter() - t)
    return best, out


def test_rates(sizes):
    """The device's copy and float64 GEMM rates: the yardsticks of the figures below."""
    sizes = (1 << 24, 512) if sizes else (1 << 28, 8192)   # bytes copied, GEMM size
    FIGURES["rates"] = dict(device=DEVICE, **device_rates(torch.device(DEVICE), sizes))
    print(FIGURES["rates"])
    assert FIGURES["rates"]["copy_GBs"] > 0 and FIGURES["rates"]["dgemm_GFLOPs"] > 0


def test_select_gpu(sizes):
    s = SEL_SMOKE if sizes else SEL
    g = torch.Generator(device=DEVICE).manual_seed(0)
    X = torch.randn(s["N"], s["C"], s["D"], device=DEVICE, generator=g)
    fm.select_batch(X[:64], 4, backend="native")                          # warm-up
    t32, p32 = _cuda_time(lambda: fm.select_batch(X, s["K"], backend="native"))
    X64 = X.double()
    t64, p64 = _cuda_time(lambda: fm.select_batch(X64, s["K"], backend="native"))
    del X64
    agree = next((t for t, (a, b) in enumerate(zip(p32.tolist(), p64.tolist())) if a != b), s["K"])
    k = min(50, s["K"])
    tn, _ = _cuda_time(lambda: fm.select_batch(X, k, backend="native"))
    tt, tw = _cuda_time(lambda: fm.select_batch(X, k, backend="torch"))
    N, C, D = X.shape
    eye_D = torch.eye(D, dtype=torch.float64, device=DEVICE)
    A, B = reference.trace_ratio_init(X, eye_D, eye_D, 1.0, 2048, BLOCK)
    A = A.permute(1, 2, 0).contiguous().permute(2, 0, 1)      # the loop's candidate-minor layout
    B = B.permute(1, 2, 0).contiguous().permute(2, 0, 1)
    UV = torch.randn(D, 2 * C, dtype=torch.float64, device=DEVICE) * 0.01
    eye = torch.eye(C, dtype=torch.float64, device=DEVICE) * 0.5
    el = torch.ones(N, dtype=torch.bool, device=DEVICE)
    step = torch.ops.fishermask_ext.trace_ratio_step
    ts, _ = _cuda_time(lambda: step(A, B, X, UV, 1.0, eye, eye, el, 1.0), 5)
    step_bytes, step_flops = step_counts(N, C, D, X.element_size(), round_trip=True)
    rates = FIGURES.get("rates", {})
    FIGURES["select"] = dict(
        case=s, float32_s=t32, float64_s=t64, float32_equals_float64=agree == s["K"],
        first_divergence=agree, native_K50_s=tn, twin_K50_s=tt, twin_over_native=tt / tn,
        step_ms=ts * 1e3, step_bytes=step_bytes, step_flops=step_flops,
        step_GBs=step_bytes / ts / 1e9, step_GFLOPs=step_flops / ts / 1e9)
    if rates:
        FIGURES["select"].update(step_of_copy_rate=FIGURES["select"]["step_GBs"] / rates["copy_GBs"],
                                 step_of_dgemm_rate=FIGURES["select"]["step_GFLOPs"] / rates["dgemm_GFLOPs"])
    print(FIGURES["select"])
    assert agree == s["K"], f"float32 picks leave the float64 ones at pick {agree}"
    assert tw.tolist() == fm.select_batch(X, k, backend="native").tolist()


def test_embed_gpu(sizes):
    s = EMB_SMOKE if sizes else EMB
    torch.manual_seed(0)
    model = fm.ResNet18Narrow(num_classes=10).to(DEVICE).eval()
    x = torch.randn(s["N"], 3, 32, 32, device=DEVICE)
    ta, mask = _cuda_time(lambda: fm.fisher_mask(model, x, pct_top=0.002, n_samples=s["fisher"]))
    fm.masked_grad_embeddings(model, x[:256], mask)                       # warm-up
    tc, emb = _cuda_time(lambda: fm.masked_grad_embeddings(model, x, mask, batch_size=1024))
    FIGURES["embed"] = dict(case=s, D=len(mask), fisher_mask_s=ta, embeddings_s=tc,
                            images_per_s=s["N"] / tc, shape=list(emb.shape))
    print(FIGURES["embed"])
    assert emb.shape == (s["N"], 10, len(mask)) and bool(torch.isfinite(emb).all())
