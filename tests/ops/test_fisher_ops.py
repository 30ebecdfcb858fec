"""Native fisher_linear_sq / fisher_conv2d_sq / fisher_channel_sq (step A) against their
pure-PyTorch twins and against autograd, opcheck, bad inputs, and memory bounded by the chunk.

Cases and tolerance: tests/op_cases.py.
"""

import pytest
import torch
import torch.nn.functional as F
from op_cases import (FISHER_CHANNEL, FISHER_CONV, FISHER_LINEAR, assert_op_matches_twin,
                      fisher_channel_args, fisher_conv_args, fisher_linear_args, op_terms,
                      strided)
from testing import (DEVICES, DTYPES, assert_native_and_fake_raise, needs_native, peak_bytes,
                     require_native, run_under_narrower_isas)

from fishermask_ext.testing import tol

OPS = ["fisher_linear_sq", "fisher_conv2d_sq", "fisher_channel_sq"]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("contiguous", [True, False])
@pytest.mark.parametrize("case", FISHER_LINEAR, ids=str)
def test_linear_matches_twin(device, dtype, contiguous, case):
    require_native(device, "fisher_linear_sq")
    a, delta, chunk = fisher_linear_args(*case, dtype)
    assert_op_matches_twin("fisher_linear_sq", [strided(a, contiguous).to(device),
                                                strided(delta, contiguous).to(device), chunk])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("contiguous", [True, False, "sample_major"])
@pytest.mark.parametrize("case", FISHER_CONV)
def test_conv2d_matches_twin(device, dtype, contiguous, case):
    require_native(device, "fisher_conv2d_sq")
    args = fisher_conv_args(*case, dtype)
    for j in range(2):
        args[j] = strided(args[j], contiguous).to(device)
    assert_op_matches_twin("fisher_conv2d_sq", args)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("contiguous", [True, False, "sample_major"])
@pytest.mark.parametrize("case", FISHER_CHANNEL, ids=str)
def test_channel_matches_twin(device, dtype, contiguous, case):
    require_native(device, "fisher_channel_sq")
    args = [None if t is None else strided(t, contiguous).to(device)
            for t in fisher_channel_args(*case, dtype)]
    assert_op_matches_twin("fisher_channel_sq", args)


@needs_native("cpu", "fisher_conv2d_sq")
def test_conv2d_is_the_sum_of_squared_autograd_gradients():
    """Ground truth apart from the twin: autograd of F.conv2d, one sample and class at a time."""
    x, delta, kernel, stride, padding, dilation, groups, _ = fisher_conv_args(
        *FISHER_CONV[2], torch.float64, seed=1)
    weight = torch.zeros(6, 4 // groups, *kernel, dtype=torch.float64, requires_grad=True)
    expected = torch.zeros_like(weight)
    for s in range(x.shape[0]):
        y = F.conv2d(x[s:s + 1], weight, None, stride, padding, dilation, groups)
        for c in range(delta.shape[0]):
            (g,) = torch.autograd.grad(y, weight, delta[c, s:s + 1], retain_graph=True)
            expected += g.square()
    op = torch.ops.fishermask_ext.fisher_conv2d_sq
    got = op(x, delta, kernel, stride, padding, dilation, groups, 3)
    scale = op(x.abs(), delta.abs(), kernel, stride, padding, dilation, groups, 3)   # Σ|terms|
    torch.testing.assert_close(got, expected.flatten(1), **tol(
        torch.float64, terms=op_terms("fisher_conv2d_sq", [x, delta]), magnitude=scale))


def _opcheck_args(name):
    gen = torch.Generator().manual_seed(0)
    if name == "fisher_linear_sq":
        return (torch.randn(5, 3, 4, generator=gen), torch.randn(2, 5, 3, 6, generator=gen), 2)
    if name == "fisher_conv2d_sq":
        return tuple(fisher_conv_args(*FISHER_CONV[2], torch.float32, seed=0))
    return (torch.randn(3, 4, 5, 6, generator=gen), torch.randn(4, 5, 6, generator=gen))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", OPS)
def test_opcheck(name, device):
    require_native(device, name)
    args = tuple(a.to(device) if torch.is_tensor(a) else a for a in _opcheck_args(name))
    torch.library.opcheck(getattr(torch.ops.fishermask_ext, name).default, args)


def _bad_inputs():
    a, delta = torch.randn(2, 1, 4), torch.randn(3, 2, 1, 5)
    yield "fisher_linear_sq", (a, delta, 0), "chunk"
    yield "fisher_linear_sq", (a[:, 0], delta, 2), "a must be"
    yield "fisher_linear_sq", (a, delta[0], 2), "delta must be"
    yield "fisher_linear_sq", (a, delta.double(), 2), "one dtype"
    yield "fisher_linear_sq", (a.int(), delta.int(), 2), "float32 or float64"
    x, d, *rest = fisher_conv_args(*FISHER_CONV[2], torch.float32, seed=0)
    yield "fisher_conv2d_sq", (x, d, *rest[:-1], 0), "chunk"
    yield "fisher_conv2d_sq", (x[0], d, *rest), "x must be"
    yield "fisher_conv2d_sq", (x, d[..., :-1], *rest), "spatial dim"
    yield "fisher_conv2d_sq", (x, d, *rest[:-2], 3, 2), "groups"
    yield "fisher_channel_sq", (torch.randn(2, 3, 4), None), "delta must be"
    yield "fisher_channel_sq", (torch.randn(2, 3, 4, 5), torch.randn(3, 4, 6)), "a must have shape"
    yield "fisher_channel_sq", (torch.randn(2, 3, 4, 5), torch.randn(3, 4, 5).double()), "dtype"


@pytest.mark.parametrize("name,args,message", list(_bad_inputs()))
def test_bad_inputs_raise(name, args, message):
    require_native("cpu", name)
    with pytest.raises(RuntimeError, match=message):
        getattr(torch.ops.fishermask_ext, name)(*args)


# a [3, 2, 4], delta [2, 3, 2, 5]; each message word for word as csrc/checks.h says it.
@pytest.mark.parametrize("bad,message", [
    (lambda a, d: (a[0], d), "a must be [n, S, I], got [2, 4]"),
    (lambda a, d: (a, d[:, :2]),
     "delta must be [C, n, S, O] with n, S of a [3, 2, 4], got [2, 2, 2, 5]"),
    (lambda a, d: (a, d.double()), "a and delta must have one dtype"),
    (lambda a, d: (a.int(), d.int()), "a must be float32 or float64, got Int"),
], ids=["a-dims", "delta-n", "dtypes", "integer"])
@pytest.mark.parametrize("name,rest", [("masked_linear_grad", (torch.tensor([0, 3]),)),
                                       ("fisher_linear_sq", (2,))], ids=["step-C", "step-A"])
def test_linear_ops_share_one_input_rule(name, rest, bad, message):
    """Both Linear ops check a and delta with one rule (checks.h check_linear_inputs), and so
    do their fake kernels (fakes.py _check_linear), in the same words."""
    require_native("cpu", name)
    args = (*bad(torch.randn(3, 2, 4), torch.randn(2, 3, 2, 5)), *rest)
    assert_native_and_fake_raise(getattr(torch.ops.fishermask_ext, name), args, message)


# x [3, 4, 6, 5], delta [2, 3, 6, 4, 3]: kernel 3x3, stride 1, no padding, groups 2.
GEOMETRY = dict(kernel_size=[3, 3], stride=[1, 1], padding=[0, 0], dilation=[1, 1], groups=2)


@pytest.mark.parametrize("bad,message", [
    (lambda x, d, g: (x[0], d, g), "x must be [n, Cin, H, W], got [4, 6, 5]"),
    (lambda x, d, g: (x, d[:, :2], g),
     "delta must be [C, n, O, Ho, Wo] with n of x, got [2, 2, 6, 4, 3]"),
    (lambda x, d, g: (x, d.double(), g), "x and delta must have one dtype"),
    (lambda x, d, g: (x.int(), d.int(), g), "x must be float32 or float64, got Int"),
    (lambda x, d, g: (x, d, {**g, "groups": 4}), "groups=4 must divide Cin=4 and O=6"),
    (lambda x, d, g: (x, d[..., :-1], g), "delta spatial dim 1 is 2 but the convolution gives 3"),
    (lambda x, d, g: (x, d, {**g, "kernel_size": [7, 3]}),
     "the padded input (6 + 2*0) is smaller than the kernel span 7"),
    (lambda x, d, g: (x, d, {**g, "padding": [-1, 0]}),
     "need kernel_size, stride, dilation >= 1 and padding >= 0, got kernel_size=[3, 3] "
     "stride=[1, 1] dilation=[1, 1] padding=[-1, 0]"),
], ids=["x-dims", "delta-n", "dtypes", "integer", "groups", "spatial", "span", "padding"])
@pytest.mark.parametrize("name", ["masked_conv2d_grad", "fisher_conv2d_sq"],
                         ids=["step-C", "step-A"])
def test_conv_ops_share_one_input_rule(name, bad, message):
    """Both Conv2d ops check x, delta and the geometry with one rule (checks.h
    check_conv_geometry), and so do their fake kernels (fakes.py _check_conv), in the same
    words."""
    require_native("cpu", name)
    x, d, g = bad(torch.randn(3, 4, 6, 5), torch.randn(2, 3, 6, 4, 3), GEOMETRY)
    geometry = [g[k] for k in ("kernel_size", "stride", "padding", "dilation", "groups")]
    args = ((x, d, torch.tensor([0, 5]), *geometry) if name == "masked_conv2d_grad"
            else (x, d, *geometry, 2))
    assert_native_and_fake_raise(getattr(torch.ops.fishermask_ext, name), args, message)


def _chunk_cases():
    """(op name, args with chunk = 0) for every op that takes a chunk."""
    f64 = dict(dtype=torch.float64)
    P = torch.eye(6, **f64)
    yield "fisher_linear_sq", (torch.randn(3, 2, 4), torch.randn(2, 3, 2, 5), 0)
    yield "fisher_conv2d_sq", (torch.randn(3, 4, 6, 5), torch.randn(2, 3, 6, 4, 3),
                               *GEOMETRY.values(), 0)
    yield "trace_ratio_init", (torch.randn(5, 2, 6), P, P, 1.0, 0, 4)
    yield "greedy_select", (torch.randn(5, 2, 6), P, P, 1.0, 1, 2, 0, 4)
    yield "factored_init", (torch.randn(5, 2, 2, **f64), torch.randn(5, 3, **f64), None, P, P,
                            1.0, 0)


@pytest.mark.parametrize("name,args", list(_chunk_cases()),
                         ids=[name for name, _ in _chunk_cases()])
def test_every_chunk_has_one_rule(name, args):
    """chunk = 0: each op that takes a chunk, and its fake kernel, say checks.h check_chunk's
    words."""
    require_native("cpu", name)
    assert_native_and_fake_raise(getattr(torch.ops.fishermask_ext, name), args,
                                 "chunk (samples per chunk) must be >= 1, got 0")


@pytest.mark.parametrize("name", ["fisher_linear_sq", "fisher_conv2d_sq"])
def test_memory_is_bounded_by_the_chunk_not_the_batch(name):
    """The op's working set (a chunk's patches, and per-sample gradients where they are formed:
    Linear with S > 1, conv on CUDA) scales with `chunk`:
    the same for 32 and 256 samples, and four times larger for a chunk four times larger."""
    require_native("cpu", name)

    def inputs(n):
        gen = torch.Generator().manual_seed(n)
        if name == "fisher_linear_sq":   # S > 1: the per-sample gradients must be formed
            return [torch.randn(n, 3, 40, generator=gen), torch.randn(4, n, 3, 30, generator=gen)]
        return [torch.randn(n, 8, 12, 12, generator=gen),
                torch.randn(4, n, 8, 12, 12, generator=gen), [3, 3], [1, 1], [1, 1], [1, 1], 1]

    op = getattr(torch.ops.fishermask_ext, name)
    small, large = inputs(32), inputs(256)
    peak = {(n, chunk): peak_bytes(lambda: op(*args, chunk))
            for n, args in ((32, small), (256, large)) for chunk in (4, 16)}
    per_sample_grads = 4 * 4 * (30 * 40 if name == "fisher_linear_sq" else 8 * 72)
    assert peak[(256, 4)] == peak[(32, 4)] and peak[(256, 16)] == peak[(32, 16)], peak
    assert peak[(32, 4)] >= 4 * per_sample_grads, peak        # it does hold one chunk
    assert 3.5 < peak[(32, 16)] / peak[(32, 4)] < 4.5, peak


@pytest.mark.slow           # a subprocess per instruction set
@needs_native("cpu", "fisher_conv2d_sq")
def test_conv2d_narrower_instruction_sets_match_the_twin():
    """The fused CPU product is compiled once per instruction set (csrc/cpu/conv_square_sum.h);
    FISHERMASK_CPU_ISA caps it, so the AVX2 and SSE2 blockings run here too, in float64."""
    script = (
        "import torch\n"
        "from fishermask_ext.ops import reference\n"
        "from fishermask_ext.testing import tol\n"
        "g = torch.Generator().manual_seed(0)\n"
        "for C, Cin in ((1, 3), (4, 16), (10, 5)):\n"
        "    x = torch.randn(3, Cin, 6, 5, generator=g, dtype=torch.float64)\n"
        "    d = torch.randn(C, 3, 7, 6, 5, generator=g, dtype=torch.float64)\n"
        "    args = (x, d, [3, 3], [1, 1], [1, 1], [1, 1], 1, 2)\n"
        "    got = torch.ops.fishermask_ext.fisher_conv2d_sq(*args)\n"
        "    scale = reference.fisher_conv2d_sq(x.abs(), d.abs(), *args[2:]).max().item()\n"
        "    bound = tol(torch.float64, terms=2 * 30 + 3 * C, magnitude=scale)\n"
        "    torch.testing.assert_close(got, reference.fisher_conv2d_sq(*args), **bound)\n")
    run_under_narrower_isas(script)
