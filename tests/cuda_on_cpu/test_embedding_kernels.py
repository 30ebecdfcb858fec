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


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", EMBED_LINEAR, ids=str)
def test_masked_linear_grad(shim, dtype, case):
    assert_op_matches_twin("masked_linear_grad", embed_linear_args(*case, dtype), ops=shim)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", EMBED_CONV)
def test_masked_conv2d_grad(shim, dtype, case):
    assert_op_matches_twin("masked_conv2d_grad", embed_conv_args(*case, dtype), ops=shim)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", FISHER_LINEAR, ids=str)
def test_fisher_linear_sq(shim, dtype, case):
    assert_op_matches_twin("fisher_linear_sq", fisher_linear_args(*case, dtype), ops=shim)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", FISHER_CONV)
def test_fisher_conv2d_sq(shim, dtype, case):
    assert_op_matches_twin("fisher_conv2d_sq", fisher_conv_args(*case, dtype), ops=shim)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", [True, "sample_major"], ids=["contiguous", "sample_major"])
@pytest.mark.parametrize("case", FISHER_CHANNEL, ids=str)
def test_fisher_channel_sq(shim, dtype, layout, case):
    delta, a = fisher_channel_args(*case, dtype)
    assert_op_matches_twin("fisher_channel_sq", [strided(delta, layout), a], ops=shim)
