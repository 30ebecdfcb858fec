"""Builds csrc/cuda's kernels as host C++ (csrc/testing/cuda_on_cpu.h) once per session, into
build/cuda_on_cpu (ninja keeps it between runs: a rebuild only follows a changed source).

Namespaces: fishermask_ext_cuda_on_cpu holds every CUDA kernel as CPU ops, and the shim's
self-test kernel; each planted_* namespace holds the step kernels with one bug planted
(test_step_kernels.py, the planted tests)."""
import importlib.util
import os

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CUDA_FILES = sorted(f for f in os.listdir(os.path.join(ROOT, "csrc", "cuda")) if f.endswith(".cu"))
SELFTEST = "testing/shim_selftest.cu"   # the shim's own checks (test_shim.py)
STEP_FILES = ["trace_ratio_step_cuda.cu", "trace_ratio_update_kernel.cu", "trace_ratio_wz_f64.cu",
              "trace_ratio_wz_f32.cu"]
KERNELS = "csrc/cuda/trace_ratio_kernels.cuh"
# Each a one-token slip of the kind review misses; each must make a test of the step fail.
PLANTED = {
    # off by one: the producer's last D-chunk stops one value short
    "planted_off_by_one": [(KERNELS, "const bool in = row0 + r < p.R && d0 + d < p.D;",
                            "const bool in = row0 + r < p.R && d0 + d < p.D - 1;")],
    # wrong comparison: ties go to the higher index
    "planted_comparison": [(KERNELS, "(s == score && i < index)", "(s == score && i > index)")],
}


def _builder():
    spec = importlib.util.spec_from_file_location(
        "cuda_to_host", os.path.join(ROOT, "csrc", "testing", "cuda_to_host.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def shim_library():
    """The path of the shim's library, built once: every CUDA kernel and the planted variants."""
    os.environ.setdefault("MAX_JOBS", str(os.cpu_count() or 2))
    variants = {"fishermask_ext_cuda_on_cpu": (CUDA_FILES + [SELFTEST], ())}
    variants.update({ns: (STEP_FILES, muts) for ns, muts in PLANTED.items()})
    return _builder().build(variants)


@pytest.fixture(scope="session")
def shim(shim_library):
    """torch.ops.fishermask_ext_cuda_on_cpu: the CUDA kernels, run on the CPU."""
    return torch.ops.fishermask_ext_cuda_on_cpu
