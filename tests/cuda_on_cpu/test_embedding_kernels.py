"""The CUDA kernels of steps A and C (masked_grad_cuda.cu, fisher_sq_cuda.cu), run on the CPU
through csrc/testing/cuda_on_cpu.h, against the twins on the cases of tests/ops (empty inputs,
C above the 16-class register tile, strides, padding, dilation, groups), within the same
tolerance (tests/op_cases.py)."""
import pytest
import torch
from op_cases import (EMBED_CONV, EMBED_LINEAR, FISHER_CHANNEL, FISHER_CONV, FISHER_LINEAR,
                      assert_op_matches_twin, embed_conv_args, embed_linear_args,
                      fisher_channel_args, fisher_conv_args, fisher_linear_args, strided)

pytestmark = pytest.mark.slow     # compiles csrc/cuda as host C++ first
DTYPES = [torch.float32, torch.float64]


CASES = [(name, build, case) for name, build, cases in (
    ("masked_linear_grad", embed_linear_args, EMBED_LINEAR),
    ("masked_conv2d_grad", embed_conv_args, EMBED_CONV),
    ("fisher_linear_sq", fisher_linear_args, FISHER_LINEAR),
    ("fisher_conv2d_sq", fisher_conv_args, FISHER_CONV)) for case in cases]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, build, case", CASES, ids=[f"{n}-{c}" for n, _, c in CASES])
def test_kernel_matches_twin(shim, dtype, name, build, case):
    assert_op_matches_twin(name, build(*case, dtype), ops=shim)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", [True, "sample_major"], ids=["contiguous", "sample_major"])
@pytest.mark.parametrize("case", FISHER_CHANNEL, ids=str)
def test_fisher_channel_sq(shim, dtype, layout, case):
    delta, a = fisher_channel_args(*case, dtype)
    assert_op_matches_twin("fisher_channel_sq", [strided(delta, layout), a], ops=shim)
