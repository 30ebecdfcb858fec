"""GPU figures at real scale (CUDA only; on a machine without CUDA every case says so and skips).

    python -m pytest benchmarks/bench_gpu.py --benchmark-enable   # what benchmarks/gpu_check.sh runs

- selection, N = 50,000, C = 10, D = 1,402, K = 1,000 (K·C = 7·D), float32 and float64: native
  whole call; float32 picks must equal float64 picks; one greedy step's achieved GB/s and
  GFLOP/s; the twin's per-step time on the same pool (K = 50) for the ratio;
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
from fishermask_ext.ops import reference
from fishermask_ext.ops.sizes import BLOCK

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

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
            json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                       **FIGURES}, f, indent=2)


def _cuda_time(fn, repeat=1):
    """Best wall time of fn() with the device synchronised around it."""
    best, out = float("inf"), None
    for _ in range(repeat):
        torch.cuda.synchronize()
        t = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best, out


def test_select_gpu(smoke):
    s = SEL_SMOKE if smoke else SEL
    g = torch.Generator(device="cuda").manual_seed(0)
    X = torch.randn(s["N"], s["C"], s["D"], device="cuda", generator=g)
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
    eye_D = torch.eye(D, dtype=torch.float64, device="cuda")
    A, B = reference.trace_ratio_init(X, eye_D, eye_D, 1.0, 2048, BLOCK)
    A = A.permute(1, 2, 0).contiguous().permute(2, 0, 1)      # the loop's candidate-minor layout
    B = B.permute(1, 2, 0).contiguous().permute(2, 0, 1)
    UV = torch.randn(D, 2 * C, dtype=torch.float64, device="cuda") * 0.01
    eye = torch.eye(C, dtype=torch.float64, device="cuda") * 0.5
    el = torch.ones(N, dtype=torch.bool, device="cuda")
    step = torch.ops.fishermask_ext.trace_ratio_step
    ts, _ = _cuda_time(lambda: step(A, B, X, UV, 1.0, eye, eye, el, 1.0), 5)
    FIGURES["select"] = dict(
        case=s, float32_s=t32, float64_s=t64, float32_equals_float64=agree == s["K"],
        first_divergence=agree, native_K50_s=tn, twin_K50_s=tt, twin_over_native=tt / tn,
        step_ms=ts * 1e3, step_GBs=X.numel() * 4 / ts / 1e9,
        step_GFLOPs=2 * N * C * D * 2 * C / ts / 1e9)
    print(FIGURES["select"])
    assert agree == s["K"], f"float32 picks leave the float64 ones at pick {agree}"
    assert tw.tolist() == fm.select_batch(X, k, backend="native").tolist()


def test_embed_gpu(smoke):
    s = EMB_SMOKE if smoke else EMB
    torch.manual_seed(0)
    model = fm.ResNet18Narrow(num_classes=10).cuda().eval()
    x = torch.randn(s["N"], 3, 32, 32, device="cuda")
    ta, mask = _cuda_time(lambda: fm.fisher_mask(model, x, pct_top=0.002, n_samples=s["fisher"]))
    fm.masked_grad_embeddings(model, x[:256], mask)                       # warm-up
    tc, emb = _cuda_time(lambda: fm.masked_grad_embeddings(model, x, mask, batch_size=1024))
    FIGURES["embed"] = dict(case=s, D=len(mask), fisher_mask_s=ta, embeddings_s=tc,
                            images_per_s=s["N"] / tc, shape=list(emb.shape))
    print(FIGURES["embed"])
    assert emb.shape == (s["N"], 10, len(mask)) and bool(torch.isfinite(emb).all())
