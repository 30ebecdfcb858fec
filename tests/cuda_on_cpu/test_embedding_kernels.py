"""The CUDA kernels of steps A and C (masked_grad_cuda.cu, fisher_sq_cuda.cu), run on the CPU
through csrc/testing/cuda_on_cpu.h, against the twins on the case lists of tests/ops (empty
inputs, C above the 16-class register tile, strides, padding, dilation, groups), within the
tolerance of tests/ops (testing.assert_op_matches_twin)."""
import importlib.util
import os

import pytest
import torch

from testing import assert_op_matches_twin

pytestmark = pytest.mark.slow     # compiles csrc/cuda as host C++ first


def _cases(module):
    """A case module of tests/ops, read by path (its test functions are collected there)."""
    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "ops", module + ".py")
    spec = importlib.util.spec_from_file_location(f"cuda_on_cpu_{module}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


EMBED, FISHER = _cases("test_embed_ops"), _cases("test_fisher_ops")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n,S,I,O,C,m", EMBED.LINEAR_CASES)
def test_masked_linear_grad(shim, dtype, n, S, I, O, C, m):
    gen = torch.Generator().manual_seed(n * 1000 + S * 100 + C * 10 + m)
    a, delta = torch.randn(n, S, I, generator=gen, dtype=dtype), torch.randn(C, n, S, O, generator=gen, dtype=dtype)
    assert_op_matches_twin("masked_linear_grad", [a, delta, EMBED._index(O * I, m, gen)], ops=shim)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", EMBED.CONV_CASES)
def test_masked_conv2d_grad(shim, dtype, case):
    args = EMBED._conv_inputs(*case, dtype, seed=sum(case[:7]))
    assert_op_matches_twin("masked_conv2d_grad", args, ops=shim)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n,S,I,O,C,chunk", FISHER.LINEAR_CASES)
def test_fisher_linear_sq(shim, dtype, n, S, I, O, C, chunk):
    gen = torch.Generator().manual_seed(n * 100 + S * 10 + C)
    a, delta = torch.randn(n, S, I, generator=gen, dtype=dtype), torch.randn(C, n, S, O, generator=gen, dtype=dtype)
    assert_op_matches_twin("fisher_linear_sq", [a, delta, chunk], ops=shim)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", FISHER.CONV_CASES)
def test_fisher_conv2d_sq(shim, dtype, case):
    args = FISHER._conv_inputs(*case, dtype, seed=sum(case[:6]))
    assert_op_matches_twin("fisher_conv2d_sq", args, ops=shim)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("layout", ["contiguous", "sample_major"])
@pytest.mark.parametrize("C,n,O,L,with_a", FISHER.CHANNEL_CASES)
def test_fisher_channel_sq(shim, dtype, layout, C, n, O, L, with_a):
    gen = torch.Generator().manual_seed(C * 100 + n * 10 + L)
    delta = torch.randn(C, n, O, L, generator=gen, dtype=dtype)
    if layout == "sample_major":
        delta = delta.transpose(0, 1).contiguous().transpose(0, 1)
    a = torch.randn(n, O, L, generator=gen, dtype=dtype) if with_a else None
    assert_op_matches_twin("fisher_channel_sq", [delta, a], ops=shim)
