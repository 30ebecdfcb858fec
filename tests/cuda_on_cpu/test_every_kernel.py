"""Every __global__ kernel of csrc/cuda runs when each op is called once through the shim:
cuda_to_host.py notes each launch by the kernel's name (cuda_on_cpu_launched() of the shim's
library), so a kernel that no op reaches, or a new one no test calls, fails here."""
import ctypes
import os
import re

import pytest
import torch
from op_cases import (EMBED_CONV, EMBED_LINEAR, FISHER_CHANNEL, FISHER_CONV, FISHER_LINEAR,
                      embed_conv_args, embed_linear_args, fisher_channel_args, fisher_conv_args,
                      fisher_linear_args)

pytestmark = pytest.mark.slow     # compiles csrc/cuda as host C++ first
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CUDA = os.path.join(ROOT, "csrc", "cuda")
# `__global__ void [__launch_bounds__(...)] name(`, over line breaks.
GLOBAL = re.compile(r"__global__\s+void\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?(\w+)\s*\(")


def global_kernels():
    names = set()
    for f in os.listdir(CUDA):
        if f.endswith((".cu", ".cuh")):
            names |= set(GLOBAL.findall(open(os.path.join(CUDA, f)).read()))
    return names


def launched(library):
    lib = ctypes.CDLL(library)
    lib.cuda_on_cpu_launched.restype = ctypes.c_char_p
    return set(lib.cuda_on_cpu_launched().decode().split())


def test_the_parser_finds_the_kernels():
    assert {"masked_linear_grad_kernel", "square_sum_kernel", "channel_sq_kernel"} <= \
        global_kernels()


def test_every_global_kernel_runs(shim, shim_library):
    f64 = torch.float64
    shim.masked_linear_grad(*embed_linear_args(*EMBED_LINEAR[0], f64))
    shim.masked_conv2d_grad(*embed_conv_args(*EMBED_CONV[0], f64))
    shim.fisher_linear_sq(*fisher_linear_args(*FISHER_LINEAR[1], f64))
    shim.fisher_conv2d_sq(*fisher_conv_args(*FISHER_CONV[0], f64))
    shim.fisher_channel_sq(*fisher_channel_args(*FISHER_CHANNEL[0], f64))
    for C in (3, 17):                      # the per-C kernels and the workspace path
        N, D = 9, 5
        A = torch.eye(C, dtype=f64).repeat(N, 1, 1) * 0.1
        B = torch.eye(C, dtype=f64).repeat(N, 1, 1)
        X, UV = torch.randn(N, C, D, dtype=f64), torch.randn(D, 2 * C, dtype=f64) * 0.1
        S, Q, el = torch.eye(C, dtype=f64), torch.eye(C, dtype=f64), torch.ones(N, dtype=bool)
        shim.trace_ratio_step(A, B, X, UV, 1.0, S, Q, el, 1.0, False)
        shim.trace_ratio_update(A, B, torch.randn(N, C, 2 * C, dtype=f64) * 0.1, 1.0, S, Q, el,
                                1.0)
    missing = global_kernels() - launched(shim_library)
    assert not missing, f"__global__ kernels no op launched: {sorted(missing)}"
