"""Native masked_linear_grad / masked_conv2d_grad (step C) against their pure-PyTorch twins.

Tolerance, derived rather than tuned: each output is a sum of L products, so any summation
order in precision u = eps/2 is within (L+1)·u·Σ|terms| of the exact value (Higham, recursive
summation); Σ|terms| is the twin evaluated in float64 on |inputs|. The test allows
(L+1)·(eps(dtype) + eps(float64))·Σ|terms| against the float64 twin: the native error bound
with a factor 2 margin, plus the float64 twin's own.
"""
import pytest
import torch
import torch.nn.functional as F

from fishermask_ext.ops import reference
from testing import DEVICES, DTYPES, needs_native, require_native


def _index(bound, m, gen):
    """[m] int64 positions in [0, bound), both ends included when m >= 2, repeats allowed."""
    idx = torch.randint(0, max(bound, 1), (m,), generator=gen)
    if m >= 2:
        idx[0], idx[-1] = bound - 1, 0
    return idx


def _strided(t, contiguous):
    """t itself, or a non-contiguous view of the same values (every other element of a copy)."""
    return t if contiguous else torch.stack([t, torch.zeros_like(t)], -1)[..., 0]


def _assert_matches_twin(name, args, terms):
    """Native op == twin within the derived bound; `terms` = L, the products per output."""
    native = getattr(torch.ops.fishermask_ext, name)(*args)
    twin = getattr(reference, name)
    up = [t.cpu().double() if torch.is_tensor(t) and t.is_floating_point() else
          t.cpu() if torch.is_tensor(t) else t for t in args]
    exact = twin(*up)                                                 # [n, C, m] f64
    magnitude = twin(*[t.abs() if torch.is_tensor(t) and t.is_floating_point() else t
                       for t in up])                                  # Σ|terms|
    eps = torch.finfo(args[0].dtype).eps + torch.finfo(torch.float64).eps
    bound = (terms + 1) * eps * magnitude
    assert native.dtype == args[0].dtype and native.device == args[0].device
    assert native.shape == exact.shape
    err = (native.cpu().double() - exact).abs()
    assert bool((err <= bound).all()), f"max error {err.max()} over bound {bound.max()}"


# (n, S, I, O, C, m): plain, empty batch, empty index, no classes, no sequence, batch of 1,
# sequence dims, more classes than the CUDA register tile (16).
LINEAR_CASES = [(4, 1, 7, 5, 3, 9), (0, 1, 7, 5, 3, 9), (4, 1, 7, 5, 3, 0), (3, 2, 4, 5, 0, 6),
                (2, 0, 4, 5, 3, 6), (1, 1, 7, 5, 10, 35), (3, 5, 11, 13, 10, 17),
                (2, 3, 6, 5, 20, 30)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("contiguous", [True, False])
@pytest.mark.parametrize("n,S,I,O,C,m", LINEAR_CASES)
def test_linear_matches_twin(device, dtype, contiguous, n, S, I, O, C, m):
    require_native(device, "masked_linear_grad")
    gen = torch.Generator().manual_seed(n * 1000 + S * 100 + C * 10 + m)
    a = torch.randn(n, S, I, generator=gen, dtype=dtype)                 # [n, S, I]
    delta = torch.randn(C, n, S, O, generator=gen, dtype=dtype)          # [C, n, S, O]
    index = _index(O * I, m, gen)                                        # [m]
    args = [_strided(t, contiguous).to(device) for t in (a, delta, index)]
    _assert_matches_twin("masked_linear_grad", args, S)


# (n, Cin, H, W, O, C, m, kernel, stride, padding, dilation, groups)
CONV_CASES = [
    (3, 4, 5, 6, 6, 3, 12, (1, 1), (1, 1), (0, 0), (1, 1), 1),     # 1x1
    (2, 3, 8, 7, 5, 4, 20, (3, 3), (1, 1), (1, 1), (1, 1), 1),     # 3x3, same padding
    (2, 4, 9, 8, 6, 3, 25, (3, 2), (2, 1), (1, 0), (1, 2), 2),     # non-square, groups=2
    (2, 4, 7, 7, 4, 2, 16, (3, 3), (2, 2), (2, 1), (2, 1), 4),     # depthwise, wide padding
    (2, 4, 6, 6, 8, 2, 16, (3, 3), (1, 1), (1, 1), (1, 1), 4),     # grouped, 2 outputs/group
    (0, 3, 5, 5, 4, 3, 10, (3, 3), (1, 1), (1, 1), (1, 1), 1),     # empty batch
    (2, 3, 5, 5, 4, 3, 0, (3, 3), (1, 1), (1, 1), (1, 1), 1),      # empty index
    (2, 3, 5, 5, 4, 0, 10, (3, 3), (1, 1), (1, 1), (1, 1), 1),     # no classes
    (1, 2, 5, 4, 3, 18, 40, (3, 3), (1, 2), (0, 1), (1, 1), 1),    # batch of 1, C > 16
    (3, 2, 3, 3, 4, 3, 30, (3, 3), (1, 1), (0, 0), (1, 1), 1),     # 1x1 output map
]


def _out_size(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _conv_inputs(n, Cin, H, W, O, C, m, kernel, stride, padding, dilation, groups, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    Ho, Wo = (_out_size(*v) for v in zip((H, W), kernel, stride, padding, dilation))
    x = torch.randn(n, Cin, H, W, generator=gen, dtype=dtype)            # [n, Cin, H, W]
    delta = torch.randn(C, n, O, Ho, Wo, generator=gen, dtype=dtype)     # [C, n, O, Ho, Wo]
    index = _index(O * Cin // groups * kernel[0] * kernel[1], m, gen)    # [m]
    return [x, delta, index, list(kernel), list(stride), list(padding), list(dilation), groups]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("contiguous", [True, False])
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_matches_twin(device, dtype, contiguous, case):
    require_native(device, "masked_conv2d_grad")
    args = _conv_inputs(*case, dtype, seed=sum(case[:7]))
    for j in range(3):
        args[j] = _strided(args[j], contiguous).to(device)
    _assert_matches_twin("masked_conv2d_grad", args, args[1].shape[3] * args[1].shape[4])


@needs_native("cpu", "masked_conv2d_grad")
def test_conv2d_is_the_per_sample_weight_gradient():
    """Ground truth apart from the twin: autograd of F.conv2d, one sample and class at a time."""
    case = (2, 4, 9, 8, 6, 3, 0, (3, 2), (2, 1), (1, 0), (1, 2), 2)
    x, delta, _, kernel, stride, padding, dilation, groups = _conv_inputs(*case, torch.float64, 1)
    weight = torch.zeros(6, 4 // groups, *kernel, dtype=torch.float64, requires_grad=True)
    index = torch.arange(weight.numel())
    out = torch.ops.fishermask_ext.masked_conv2d_grad(x, delta, index, kernel, stride, padding,
                                                      dilation, groups)
    for s in range(x.shape[0]):
        y = F.conv2d(x[s:s + 1], weight, None, stride, padding, dilation, groups)
        for c in range(delta.shape[0]):
            (g,) = torch.autograd.grad(y, weight, delta[c, s:s + 1], retain_graph=True)
            torch.testing.assert_close(out[s, c], g.flatten(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["masked_linear_grad", "masked_conv2d_grad"])
def test_opcheck(name, device):
    require_native(device, name)
    if name == "masked_linear_grad":
        gen = torch.Generator().manual_seed(0)
        args = (torch.randn(3, 2, 5, generator=gen), torch.randn(4, 3, 2, 6, generator=gen),
                _index(30, 7, gen))
    else:
        args = tuple(_conv_inputs(2, 4, 7, 6, 6, 3, 9, (3, 2), (2, 1), (1, 1), (1, 2), 2,
                                  torch.float32, 0))
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
    x, delta, index, *rest = _conv_inputs(2, 4, 7, 6, 6, 3, 9, (3, 2), (2, 1), (1, 1), (1, 2), 2,
                                          torch.float32, 0)
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
