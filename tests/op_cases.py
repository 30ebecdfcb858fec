"""The step A and C ops' test cases, shared by tests/ops (native against twin) and
tests/cuda_on_cpu (the CUDA kernels run on the CPU): case lists, their inputs, the shared
assertion and its tolerance."""
import torch

from fishermask_ext.testing import tol


def strided(t, contiguous):
    """t itself (True), a non-contiguous view of the same values (False: every other element of
    a copy), or "sample_major": a delta [C, n, ...] as step A stores it, the transposed view of
    [n, C, ...] memory (tensors of 3 dims or fewer stay as they are)."""
    if contiguous == "sample_major":
        return t.transpose(0, 1).contiguous().transpose(0, 1) if t.dim() > 3 else t
    return t if contiguous else torch.stack([t, torch.zeros_like(t)], -1)[..., 0]


def conv_out_size(size, k, s, p, d):
    """One spatial dim of a conv's output (torch.nn.Conv2d's formula)."""
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def conv_tensors(n, Cin, H, W, O, C, kernel, stride, padding, dilation, gen, dtype):
    """(x [n, Cin, H, W], delta [C, n, O, Ho, Wo]): standard normal inputs of a conv op."""
    Ho, Wo = (conv_out_size(*v) for v in zip((H, W), kernel, stride, padding, dilation))
    x = torch.randn(n, Cin, H, W, generator=gen, dtype=dtype)
    delta = torch.randn(C, n, O, Ho, Wo, generator=gen, dtype=dtype)
    return x, delta


def op_terms(name, args):
    """tol's `terms` for one output of a step A or C op: a sum of S (Linear) or L = Ho·Wo
    (conv, channel) products for step C; for step A, Σ over n samples and C classes of the
    square of such a sum (a square doubles its base's relative error): 2·S (or 2·L) + n·C."""
    delta = args[1] if name != "fisher_channel_sq" else args[0]         # [C, n, ..., S or L]
    C, n = delta.shape[0], delta.shape[1]
    inner = args[0].shape[1] if name.endswith("linear_grad") or name.endswith("linear_sq") \
        else delta.shape[-1] * (delta.shape[-2] if "conv2d" in name else 1)
    return inner if name.startswith("masked") else 2 * inner + n * C


def assert_op_matches_twin(name, args, ops=None):
    """<ops>.<name>(*args) (default torch.ops.fishermask_ext) against its twin (ops/reference.py)
    run in float64 on the same values, within tol(dtype, terms=op_terms(name, args)); the
    magnitude is the twin on |inputs| (its Σ|terms|, so a cancelling sum gets the absolute
    bound that rounding earns it)."""
    from fishermask_ext.ops import reference
    native = getattr(ops or torch.ops.fishermask_ext, name)(*args)
    twin = getattr(reference, name)
    up = [t.cpu().double() if torch.is_tensor(t) and t.is_floating_point() else
          t.cpu() if torch.is_tensor(t) else t for t in args]
    exact = twin(*up)
    magnitude = twin(*[t.abs() if torch.is_tensor(t) and t.is_floating_point() else t
                       for t in up])
    assert native.dtype == args[0].dtype and native.device == args[0].device
    assert native.shape == exact.shape
    torch.testing.assert_close(native.cpu().double(), exact,
                               **tol(args[0].dtype, terms=op_terms(name, args),
                                     magnitude=magnitude))



def index_positions(bound, m, gen):
    """[m] int64 positions in [0, bound), both ends included when m >= 2, repeats allowed."""
    idx = torch.randint(0, max(bound, 1), (m,), generator=gen)
    if m >= 2:
        idx[0], idx[-1] = bound - 1, 0
    return idx


# (n, S, I, O, C, m): plain, empty batch, empty index, no classes, no sequence, batch of 1,
# sequence dims, more classes than the CUDA register tile (16).
EMBED_LINEAR = [(4, 1, 7, 5, 3, 9), (0, 1, 7, 5, 3, 9), (4, 1, 7, 5, 3, 0), (3, 2, 4, 5, 0, 6),
                (2, 0, 4, 5, 3, 6), (1, 1, 7, 5, 10, 35), (3, 5, 11, 13, 10, 17),
                (2, 3, 6, 5, 20, 30)]


def embed_linear_args(n, S, I, O, C, m, dtype):
    """[a [n, S, I], delta [C, n, S, O], index [m]] of masked_linear_grad for one case."""
    gen = torch.Generator().manual_seed(n * 1000 + S * 100 + C * 10 + m)
    a = torch.randn(n, S, I, generator=gen, dtype=dtype)
    delta = torch.randn(C, n, S, O, generator=gen, dtype=dtype)
    return [a, delta, index_positions(O * I, m, gen)]


# (n, Cin, H, W, O, C, m, kernel, stride, padding, dilation, groups)
EMBED_CONV = [
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


def embed_conv_args(n, Cin, H, W, O, C, m, kernel, stride, padding, dilation, groups, dtype,
                    seed=None):
    """The arguments of masked_conv2d_grad for one case (seed: default from the case)."""
    gen = torch.Generator().manual_seed(sum((n, Cin, H, W, O, C, m)) if seed is None else seed)
    x, delta = conv_tensors(n, Cin, H, W, O, C, kernel, stride, padding, dilation, gen, dtype)
    index = index_positions(O * Cin // groups * kernel[0] * kernel[1], m, gen)    # [m]
    return [x, delta, index, list(kernel), list(stride), list(padding), list(dilation), groups]


# (n, S, I, O, C, chunk): S = 1 (the product of squared factors), shared weights S > 1, empty
# batch, no classes, no positions, chunk larger than n, odd sizes that leave a partial chunk.
FISHER_LINEAR = [(5, 1, 7, 3, 2, 2), (5, 3, 4, 6, 3, 2), (0, 1, 7, 5, 3, 4), (4, 2, 3, 5, 0, 3),
                (3, 0, 4, 5, 2, 2), (7, 1, 9, 5, 10, 16), (9, 4, 5, 7, 4, 4)]


def fisher_linear_args(n, S, I, O, C, chunk, dtype):
    """[a [n, S, I], delta [C, n, S, O], chunk] of fisher_linear_sq for one case."""
    gen = torch.Generator().manual_seed(n * 100 + S * 10 + C)
    a = torch.randn(n, S, I, generator=gen, dtype=dtype)
    delta = torch.randn(C, n, S, O, generator=gen, dtype=dtype)
    return [a, delta, chunk]


# (n, Cin, H, W, O, C, kernel, stride, padding, dilation, groups, chunk)
FISHER_CONV = [
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


def fisher_conv_args(n, Cin, H, W, O, C, kernel, stride, padding, dilation, groups, chunk, dtype,
                     seed=None):
    """The arguments of fisher_conv2d_sq for one case (seed: default from the case)."""
    gen = torch.Generator().manual_seed(sum((n, Cin, H, W, O, C)) if seed is None else seed)
    x, delta = conv_tensors(n, Cin, H, W, O, C, kernel, stride, padding, dilation, gen, dtype)
    return [x, delta, list(kernel), list(stride), list(padding), list(dilation), groups, chunk]


# (C, n, O, L, with a): BatchNorm γ (with x̂), biases (without), empty batch, no positions;
# L = 16 and 21: whole and partial runs of the kernel's 8 interleaved partial sums.
FISHER_CHANNEL = [(3, 5, 4, 6, True), (3, 5, 4, 6, False), (2, 0, 3, 4, True),
                 (2, 3, 3, 0, True), (10, 7, 5, 1, False), (1, 9, 300, 3, True),
                 (3, 4, 2, 16, False), (2, 3, 5, 21, True),
                 (2, 3, 5, 70, True), (4, 40, 3, 5, False)]   # L > 32; many (class, sample) rows


def fisher_channel_args(C, n, O, L, with_a, dtype):
    """[delta [C, n, O, L], a [n, O, L] or None] of fisher_channel_sq for one case."""
    gen = torch.Generator().manual_seed(C * 100 + n * 10 + L)
    delta = torch.randn(C, n, O, L, generator=gen, dtype=dtype)
    return [delta, torch.randn(n, O, L, generator=gen, dtype=dtype) if with_a else None]
