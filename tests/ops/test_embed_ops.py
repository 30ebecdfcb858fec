"""Native masked_linear_grad / masked_conv2d_grad (step C) against their pure-PyTorch twins.

Cases and tolerance: tests/op_cases.py.
"""
import pytest
import torch
import torch.nn.functional as F
from op_cases import (EMBED_CONV, EMBED_LINEAR, assert_op_matches_twin, embed_conv_args,
                      embed_linear_args, index_positions, op_terms, strided)
from testing import DEVICES, DTYPES, needs_native, require_native

from fishermask_ext.testing import tol


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("contiguous", [True, False])
@pytest.mark.parametrize("n,S,I,O,C,m", EMBED_LINEAR)
def test_linear_matches_twin(device, dtype, contiguous, n, S, I, O, C, m):
    require_native(device, "masked_linear_grad")
    args = [strided(t, contiguous).to(device) for t in embed_linear_args(n, S, I, O, C, m, dtype)]
    assert_op_matches_twin("masked_linear_grad", args)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("contiguous", [True, False])
@pytest.mark.parametrize("case", EMBED_CONV)
def test_conv2d_matches_twin(device, dtype, contiguous, case):
    require_native(device, "masked_conv2d_grad")
    args = embed_conv_args(*case, dtype)
    for j in range(3):
        args[j] = strided(args[j], contiguous).to(device)
    assert_op_matches_twin("masked_conv2d_grad", args)


@needs_native("cpu", "masked_conv2d_grad")
def test_conv2d_is_the_per_sample_weight_gradient():
    """Ground truth apart from the twin: autograd of F.conv2d, one sample and class at a time."""
    case = (2, 4, 9, 8, 6, 3, 0, (3, 2), (2, 1), (1, 0), (1, 2), 2)
    x, delta, _, kernel, stride, padding, dilation, groups = embed_conv_args(*case, torch.float64,
                                                                            seed=1)
    weight = torch.zeros(6, 4 // groups, *kernel, dtype=torch.float64, requires_grad=True)
    index = torch.arange(weight.numel())
    op, geometry = torch.ops.fishermask_ext.masked_conv2d_grad, (kernel, stride, padding,
                                                                 dilation, groups)
    out = op(x, delta, index, *geometry)
    bound = tol(torch.float64, terms=op_terms("masked_conv2d_grad", [x, delta]),
                magnitude=op(x.abs(), delta.abs(), index, *geometry))          # Σ|terms|
    for s in range(x.shape[0]):
        y = F.conv2d(x[s:s + 1], weight, None, stride, padding, dilation, groups)
        for c in range(delta.shape[0]):
            (g,) = torch.autograd.grad(y, weight, delta[c, s:s + 1], retain_graph=True)
            torch.testing.assert_close(out[s, c], g.flatten(), **bound)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["masked_linear_grad", "masked_conv2d_grad"])
def test_opcheck(name, device):
    require_native(device, name)
    if name == "masked_linear_grad":
        gen = torch.Generator().manual_seed(0)
        args = (torch.randn(3, 2, 5, generator=gen), torch.randn(4, 3, 2, 6, generator=gen),
                index_positions(30, 7, gen))
    else:
        args = tuple(embed_conv_args(2, 4, 7, 6, 6, 3, 9, (3, 2), (2, 1), (1, 1), (1, 2), 2,
                                     torch.float32, seed=0))
    args = tuple(a.to(device) if torch.is_tensor(a) else a for a in args)
    torch.library.opcheck(getattr(torch.ops.fishermask_ext, name).default, args)


def _bad_linear():
    a, delta, index = torch.randn(2, 1, 4), torch.randn(3, 2, 1, 5), torch.tensor([0, 19])
    yield (a, delta, torch.tensor([0, 20])), "index entries must be"
    yield (a, delta, torch.tensor([-1, 3])), "index entries must be"
    yield (a[:, 0], delta, index), "a must be"
    yield (a, delta[0], index), "delta must be"
    yield (a, delta.double(), index), "one dtype"
    yield (a.int(), delta.int(), index), "float32 or float64"
    yield (a, delta, index.int()), "int64"


def _bad_conv():
    x, delta, index, *rest = embed_conv_args(2, 4, 7, 6, 6, 3, 9, (3, 2), (2, 1), (1, 1), (1, 2),
                                             2, torch.float32, seed=0)
    bound = 6 * 2 * 3 * 2
    yield (x, delta, torch.tensor([bound]), *rest), "index entries must be"
    yield (x, delta, torch.tensor([-1]), *rest), "index entries must be"
    yield (x[0], delta, index, *rest), "x must be"
    yield (x, delta[0], index, *rest), "delta must be"
    yield (x, delta[..., :-1], index, *rest), "spatial dim"
    yield (x, delta.double(), index, *rest), "one dtype"
    yield (x, delta, index, *rest[:-1], 3), "groups"


@pytest.mark.parametrize("name,bad", [("masked_linear_grad", b) for b in _bad_linear()] +
                         [("masked_conv2d_grad", b) for b in _bad_conv()])
def test_bad_inputs_raise(name, bad):
    require_native("cpu", name)
    args, message = bad
    with pytest.raises(RuntimeError, match=message):
        getattr(torch.ops.fishermask_ext, name)(*args)
