"""Native fisher_linear_sq / fisher_conv2d_sq / fisher_channel_sq (step A) against their
pure-PyTorch twins and against autograd, opcheck, bad inputs, and memory bounded by the chunk.

Tolerances: in float64 both sides sum the same squares in other orders (relative rounding of
about (terms)·2⁻⁵³, far below F64_TOL's 1e-10 for these sizes); in float32 the native error
against the float64 twin may be at most twice the float32 twin's (derived_tolerance).
"""

import pytest
import torch
import torch.nn.functional as F

from fishermask_ext.ops import reference
from fishermask_ext.testing import (DEVICES, DTYPES, F64_TOL, derived_tolerance, max_error,
                                    needs_native, require_native)

from testing import peak_bytes, run_under_narrower_isas

OPS = ["fisher_linear_sq", "fisher_conv2d_sq", "fisher_channel_sq"]


def _strided(t, contiguous):
    """t itself, or a non-contiguous view of the same values; "sample_major": a delta
    [C, n, ...] as step A stores it, the transposed view of [n, C, ...] memory."""
    if contiguous == "sample_major":
        return t.transpose(0, 1).contiguous().transpose(0, 1) if t.dim() > 3 else t
    return t if contiguous else torch.stack([t, torch.zeros_like(t)], -1)[..., 0]


def _assert_matches_twin(name, args):
    native = getattr(torch.ops.fishermask_ext, name)(*args)
    twin = getattr(reference, name)
    up = [t.cpu().double() if torch.is_tensor(t) else t for t in args]
    exact = twin(*up)
    assert native.dtype == args[0].dtype and native.device == args[0].device
    assert native.shape == exact.shape
    if args[0].dtype == torch.float64:
        torch.testing.assert_close(native.cpu(), exact, **F64_TOL)
    else:
        low = twin(*[t.cpu() if torch.is_tensor(t) else t for t in args])
        assert max_error(native, exact) <= derived_tolerance(low, exact)


# (n, S, I, O, C, chunk): S = 1 (the product of squared factors), shared weights S > 1, empty
# batch, no classes, no positions, chunk larger than n, odd sizes that leave a partial chunk.
LINEAR_CASES = [(5, 1, 7, 3, 2, 2), (5, 3, 4, 6, 3, 2), (0, 1, 7, 5, 3, 4), (4, 2, 3, 5, 0, 3),
                (3, 0, 4, 5, 2, 2), (7, 1, 9, 5, 10, 16), (9, 4, 5, 7, 4, 4)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("contiguous", [True, False])
@pytest.mark.parametrize("n,S,I,O,C,chunk", LINEAR_CASES)
def test_linear_matches_twin(device, dtype, contiguous, n, S, I, O, C, chunk):
    require_native(device, "fisher_linear_sq")
    gen = torch.Generator().manual_seed(n * 100 + S * 10 + C)
    a = torch.randn(n, S, I, generator=gen, dtype=dtype)                  # [n, S, I]
    delta = torch.randn(C, n, S, O, generator=gen, dtype=dtype)           # [C, n, S, O]
    _assert_matches_twin("fisher_linear_sq",
                         [_strided(a, contiguous).to(device),
                          _strided(delta, contiguous).to(device), chunk])


# (n, Cin, H, W, O, C, kernel, stride, padding, dilation, groups, chunk)
CONV_CASES = [
    (3, 4, 5, 6, 6, 3, (1, 1), (1, 1), (0, 0), (1, 1), 1, 2),     # 1x1
    (5, 3, 8, 7, 5, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1, 2),     # 3x3, same padding
    (4, 4, 9, 8, 6, 3, (3, 2), (2, 1), (1, 0), (1, 2), 2, 3),     # strided, dilated, groups=2
    (3, 4, 7, 7, 4, 2, (3, 3), (2, 2), (2, 1), (2, 1), 4, 1),     # depthwise, wide padding
    (2, 4, 6, 6, 8, 2, (3, 3), (3, 2), (3, 3), (1, 1), 4, 5),     # padding wider than stride
    (0, 3, 5, 5, 4, 3, (3, 3), (1, 1), (1, 1), (1, 1), 1, 2),     # empty batch
    (2, 3, 5, 5, 4, 0, (3, 3), (1, 1), (1, 1), (1, 1), 1, 2),     # no classes
    (7, 2, 5, 4, 3, 10, (3, 3), (1, 2), (0, 1), (1, 1), 1, 3),    # odd n, C = 10
    # K = 144 (several column blocks of the CPU's fused tiles), C = 7 and 11 (unequal class blocks)
    (3, 16, 6, 6, 5, 7, (3, 3), (1, 1), (1, 1), (1, 1), 1, 2),
    (2, 16, 5, 5, 3, 11, (3, 3), (1, 1), (1, 1), (1, 1), 1, 4),
]


def _out_size(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _conv_inputs(n, Cin, H, W, O, C, kernel, stride, padding, dilation, groups, chunk, dtype,
                 seed):
    gen = torch.Generator().manual_seed(seed)
    Ho, Wo = (_out_size(*v) for v in zip((H, W), kernel, stride, padding, dilation))
    x = torch.randn(n, Cin, H, W, generator=gen, dtype=dtype)            # [n, Cin, H, W]
    delta = torch.randn(C, n, O, Ho, Wo, generator=gen, dtype=dtype)     # [C, n, O, Ho, Wo]
    return [x, delta, list(kernel), list(stride), list(padding), list(dilation), groups, chunk]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("contiguous", [True, False, "sample_major"])
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_matches_twin(device, dtype, contiguous, case):
    require_native(device, "fisher_conv2d_sq")
    args = _conv_inputs(*case, dtype, seed=sum(case[:6]))
    for j in range(2):
        args[j] = _strided(args[j], contiguous).to(device)
    _assert_matches_twin("fisher_conv2d_sq", args)


# (C, n, O, L, with a): BatchNorm γ (with x̂), biases (without), empty batch, no positions;
# L = 16 and 21: whole and partial runs of the kernel's 8 interleaved partial sums.
CHANNEL_CASES = [(3, 5, 4, 6, True), (3, 5, 4, 6, False), (2, 0, 3, 4, True),
                 (2, 3, 3, 0, True), (10, 7, 5, 1, False), (1, 9, 300, 3, True),
                 (3, 4, 2, 16, False), (2, 3, 5, 21, True),
                 (2, 3, 5, 70, True), (4, 40, 3, 5, False)]   # L > 32; many (class, sample) rows


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("contiguous", [True, False, "sample_major"])
@pytest.mark.parametrize("C,n,O,L,with_a", CHANNEL_CASES)
def test_channel_matches_twin(device, dtype, contiguous, C, n, O, L, with_a):
    require_native(device, "fisher_channel_sq")
    gen = torch.Generator().manual_seed(C * 100 + n * 10 + L)
    delta = _strided(torch.randn(C, n, O, L, generator=gen, dtype=dtype), contiguous)
    a = _strided(torch.randn(n, O, L, generator=gen, dtype=dtype), contiguous) if with_a else None
    _assert_matches_twin("fisher_channel_sq",
                         [delta.to(device), a.to(device) if with_a else None])


@needs_native("cpu", "fisher_conv2d_sq")
def test_conv2d_is_the_sum_of_squared_autograd_gradients():
    """Ground truth apart from the twin: autograd of F.conv2d, one sample and class at a time."""
    x, delta, kernel, stride, padding, dilation, groups, _ = _conv_inputs(
        *CONV_CASES[2], torch.float64, 1)
    weight = torch.zeros(6, 4 // groups, *kernel, dtype=torch.float64, requires_grad=True)
    expected = torch.zeros_like(weight)
    for s in range(x.shape[0]):
        y = F.conv2d(x[s:s + 1], weight, None, stride, padding, dilation, groups)
        for c in range(delta.shape[0]):
            (g,) = torch.autograd.grad(y, weight, delta[c, s:s + 1], retain_graph=True)
            expected += g.square()
    got = torch.ops.fishermask_ext.fisher_conv2d_sq(x, delta, kernel, stride, padding,
                                                    dilation, groups, 3)
    torch.testing.assert_close(got, expected.flatten(1), rtol=1e-12, atol=1e-12)


def _opcheck_args(name):
    gen = torch.Generator().manual_seed(0)
    if name == "fisher_linear_sq":
        return (torch.randn(5, 3, 4, generator=gen), torch.randn(2, 5, 3, 6, generator=gen), 2)
    if name == "fisher_conv2d_sq":
        return tuple(_conv_inputs(*CONV_CASES[2], torch.float32, 0))
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
    x, d, *rest = _conv_inputs(*CONV_CASES[2], torch.float32, 0)
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


@pytest.mark.parametrize("bad,message", [
    (lambda a, d: (a[0], d), r"a must be \[n, S, I\]"),
    (lambda a, d: (a, d[:, :2]), r"delta must be \[C, n, S, O\] with n, S"),
    (lambda a, d: (a, d.double()), "dtype"),
    (lambda a, d: (a.int(), d.int()), "a must be"),
], ids=["a-dims", "delta-n", "dtypes", "integer"])
@pytest.mark.parametrize("name,rest", [("masked_linear_grad", (torch.tensor([0, 3]),)),
                                       ("fisher_linear_sq", (2,))], ids=["step-C", "step-A"])
def test_linear_ops_share_one_input_rule(name, rest, bad, message):
    """Both Linear ops check a and delta with one rule (checks.h check_linear_inputs), and so
    do their fake kernels (fakes.py _check_linear)."""
    require_native("cpu", name)
    op = getattr(torch.ops.fishermask_ext, name)
    args = (*bad(torch.randn(3, 2, 4), torch.randn(2, 3, 2, 5)), *rest)
    with pytest.raises(RuntimeError, match=message):
        op(*args)
    with pytest.raises(Exception, match=message):
        with torch._subclasses.fake_tensor.FakeTensorMode() as mode:
            op(*[mode.from_tensor(t) if isinstance(t, torch.Tensor) else t for t in args])


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


@needs_native("cpu", "fisher_conv2d_sq")
def test_conv2d_narrower_instruction_sets_match_the_twin():
    """The fused CPU product is compiled once per instruction set (csrc/cpu/conv_square_sum.h);
    FISHERMASK_CPU_ISA caps it, so the AVX2 and SSE2 blockings run here too, in float64."""
    script = (
        "import torch\n"
        "from fishermask_ext.ops import reference\n"
        "g = torch.Generator().manual_seed(0)\n"
        "for C, Cin in ((1, 3), (4, 16), (10, 5)):\n"
        "    x = torch.randn(3, Cin, 6, 5, generator=g, dtype=torch.float64)\n"
        "    d = torch.randn(C, 3, 7, 6, 5, generator=g, dtype=torch.float64)\n"
        "    args = (x, d, [3, 3], [1, 1], [1, 1], [1, 1], 1, 2)\n"
        "    got = torch.ops.fishermask_ext.fisher_conv2d_sq(*args)\n"
        "    torch.testing.assert_close(got, reference.fisher_conv2d_sq(*args), rtol=1e-10, atol=1e-10)\n")
    run_under_narrower_isas(script)
