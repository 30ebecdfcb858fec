"""Fake (meta) kernels of the compiled ops: the shape and dtype checks of csrc/checks.h, then
empty outputs, so torch.compile and FakeTensor tracing reject what the ops would reject.
Imported by fishermask_ext.ops once the compiled module has loaded."""
import torch

from .conv import weight_columns

_FLOAT = (torch.float32, torch.float64)


def _check_shape(t, shape, name):
    torch._check(tuple(t.shape) == tuple(shape),
                 lambda: f"{name} must have shape {tuple(shape)}, got {tuple(t.shape)}")


def _sizes(t):
    """A shape as c10 prints IntArrayRef in a TORCH_CHECK message: [3, 2, 4]."""
    return str(list(t.shape))


# c10's names of the dtypes (ScalarType), as a TORCH_CHECK message prints them.
_SCALAR_TYPE = {torch.float32: "Float", torch.float64: "Double", torch.float16: "Half",
                torch.bfloat16: "BFloat16", torch.int64: "Long", torch.int32: "Int",
                torch.int16: "Short", torch.int8: "Char", torch.uint8: "Byte",
                torch.bool: "Bool", torch.complex64: "ComplexFloat",
                torch.complex128: "ComplexDouble"}


def _check_float(t, name):
    """csrc/checks.h check_float."""
    torch._check(t.dtype in _FLOAT, lambda: f"{name} must be float32 or float64, got "
                                            f"{_SCALAR_TYPE.get(t.dtype, t.dtype)}")


def _check_chunk(chunk):
    """csrc/checks.h check_chunk: the one chunk rule of every op that takes one."""
    torch._check(chunk >= 1, lambda: f"chunk (samples per chunk) must be >= 1, got {chunk}")


def _check_f64(*named):
    for name, t in named:
        torch._check(t.dtype == torch.float64, lambda: f"{name} must be float64, got {t.dtype}")


@torch.library.register_fake("fishermask_ext::trace_ratio_step")
def _(A, B, X, UV, scale, S, Q, eligible, sigma, round_scores=False):
    torch._check(A.dim() == 3 and A.shape[1] == A.shape[2],
                 lambda: f"A must be [N, C, C], got {_sizes(A)}")
    N, C = A.shape[0], A.shape[1]
    torch._check(C >= 1, lambda: f"A must be [N, C, C] with C >= 1, got {_sizes(A)}")
    _check_f64(("A", A), ("B", B), ("S", S), ("Q", Q))
    _check_shape(B, (N, C, C), "B")
    torch._check(A.stride() == B.stride(),
                 lambda: f"A and B must share one layout, got strides {A.stride()} and "
                         f"{B.stride()}")
    _check_shape(S, (C, C), "S")
    _check_shape(Q, (C, C), "Q")
    _check_shape(eligible, (N,), "eligible")
    torch._check(eligible.dtype == torch.bool, lambda: "eligible must be bool")
    torch._check(X.dtype in _FLOAT and X.dim() == 3 and X.shape[0] == N and X.shape[1] == C,
                 lambda: f"X must be [N, C, D] = [{N}, {C}, D] float32/float64")
    if UV is not None:
        _check_f64(("UV", UV))
        _check_shape(UV, (X.shape[2], 2 * C), "UV")
    return A.new_empty((N,)), A.new_empty((), dtype=torch.long)

@torch.library.register_fake("fishermask_ext::trace_ratio_update")
def _(A, B, WZ, scale, S, Q, eligible, sigma, round_scores=False):
    torch._check(A.dim() == 3 and A.shape[1] == A.shape[2] and A.shape[1] >= 1,
                 lambda: f"A must be [N, C, C] with C >= 1, got {_sizes(A)}")
    N, C = A.shape[0], A.shape[1]
    _check_f64(("A", A), ("B", B), ("WZ", WZ), ("S", S), ("Q", Q))
    _check_shape(B, (N, C, C), "B")
    torch._check(A.stride() == B.stride(), lambda: "A and B must share one layout")
    torch._check(WZ.dim() == 3 and tuple(WZ.shape[:2]) == (N, C) and WZ.shape[2] in (0, 2 * C),
                 lambda: f"WZ must be [N, C, 2C] = [{N}, {C}, {2 * C}] or [N, C, 0]")
    _check_shape(S, (C, C), "S")
    _check_shape(Q, (C, C), "Q")
    _check_shape(eligible, (N,), "eligible")
    torch._check(eligible.dtype == torch.bool, lambda: "eligible must be bool")
    return A.new_empty((N,)), A.new_empty((), dtype=torch.long)


def _check_factors(G, H, R):
    """csrc/checks.h check_factors: -> D = C·d̄ + D_r."""
    torch._check(G.dim() == 3 and G.shape[1] == G.shape[2] and G.shape[1] >= 1
                 and G.dtype in _FLOAT, lambda: "G must be [n, C, C] f32/f64 with C >= 1")
    n, C = G.shape[0], G.shape[1]
    torch._check(H.dim() == 2 and H.shape[0] == n and H.dtype == G.dtype,
                 lambda: f"H must be [n, d] with n = {n} and G's dtype")
    D = C * H.shape[1]
    if R is not None:
        torch._check(R.dim() == 3 and tuple(R.shape[:2]) == (n, C) and R.dtype == G.dtype,
                     lambda: f"R must be [n, C, D_r] = [{n}, {C}, D_r] with G's dtype")
        D = D + R.shape[2]
    return D


@torch.library.register_fake("fishermask_ext::factored_times")
def _(G, H, R, M):
    D = _check_factors(G, H, R)
    _check_f64(("M", M))
    torch._check(M.dim() == 2 and M.shape[0] == D, lambda: f"M must be [D, k] with D = {D}")
    return G.new_empty((G.shape[0], G.shape[1], M.shape[1]), dtype=torch.float64)


@torch.library.register_fake("fishermask_ext::factored_step")
def _(A, B, G, H, R, UV, scale, S, Q, eligible, sigma, round_scores=False):
    D = _check_factors(G, H, R)
    torch._check(A.dim() == 3 and tuple(A.shape) == tuple(G.shape) and A.dtype == torch.float64,
                 lambda: "A must be [N, C, C] f64 with G's N and C")
    _check_f64(("B", B), ("S", S), ("Q", Q))
    N, C = A.shape[0], A.shape[1]
    _check_shape(B, (N, C, C), "B")
    torch._check(A.stride() == B.stride(), lambda: "A and B must share one layout")
    if UV is not None:
        _check_f64(("UV", UV))
        _check_shape(UV, (D, 2 * C), "UV")
    _check_shape(S, (C, C), "S")
    _check_shape(Q, (C, C), "Q")
    _check_shape(eligible, (N,), "eligible")
    return A.new_empty((N,)), A.new_empty((), dtype=torch.long)


@torch.library.register_fake("fishermask_ext::factored_gram")
def _(G, H, R):
    D = _check_factors(G, H, R)
    return G.new_empty((D, D), dtype=torch.float64)


@torch.library.register_fake("fishermask_ext::factored_init")
def _(G, H, R, P0, F, scale, chunk):
    D = _check_factors(G, H, R)
    _check_f64(("P0", P0), ("F", F))
    _check_shape(P0, (D, D), "P0")
    _check_shape(F, (D, D), "F")
    _check_chunk(chunk)
    n, C = G.shape[0], G.shape[1]
    return tuple(G.new_empty((n, C, C), dtype=torch.float64) for _ in range(2))


@torch.library.register_fake("fishermask_ext::commit_direction")
def _(P, F, xt, S):
    _check_f64(("P", P), ("F", F), ("xt", xt), ("S", S))
    torch._check(P.dim() == 2 and P.shape[0] == P.shape[1], lambda: "P must be [D, D]")
    D = P.shape[0]
    _check_shape(F, (D, D), "F")
    torch._check(xt.dim() == 2 and xt.shape[1] == D and xt.shape[0] >= 1,
                 lambda: f"xt must be [C, {D}] with C >= 1")
    _check_shape(S, (xt.shape[0], xt.shape[0]), "S")
    return P.new_empty((D, 2 * xt.shape[0]))

def _check_init(X, P0, F, chunk, block):
    torch._check(X.dim() == 3 and X.dtype in _FLOAT, lambda: "X must be [N, C, D] f32/f64")
    D = X.shape[2]
    _check_f64(("P0", P0), ("F", F))
    _check_shape(P0, (D, D), "P0")
    _check_shape(F, (D, D), "F")
    _check_chunk(chunk)
    torch._check(block >= 1, lambda: f"block (columns per block) must be >= 1, got {block}")


@torch.library.register_fake("fishermask_ext::trace_ratio_init")
def _(X, P0, F, scale, chunk, block):
    _check_init(X, P0, F, chunk, block)
    N, C = X.shape[0], X.shape[1]
    if X.device.type == "cuda":       # candidate-minor, as the CUDA step reads it
        return tuple(X.new_empty((C, C, N), dtype=torch.float64).permute(2, 0, 1)
                     for _ in range(2))
    return tuple(X.new_empty((N, C, C), dtype=torch.float64) for _ in range(2))


@torch.library.register_fake("fishermask_ext::greedy_select")
def _(X, P0, F, scale, budget, n_forward, chunk, block, round_scores=False, candidates=None):
    _check_init(X, P0, F, chunk, block)
    if candidates is not None:
        torch._check(candidates.dtype == torch.bool, lambda: "candidates must be bool")
        _check_shape(candidates, (X.shape[0],), "candidates")
    torch._check(1 <= budget <= n_forward <= X.shape[0],
                 lambda: "need 1 <= budget <= n_forward <= N")
    return (X.new_empty((budget,), dtype=torch.long),
            X.new_empty((budget,), dtype=torch.float64))

def _check_linear(a, delta):
    """csrc/checks.h check_linear_inputs, in its order and words: a [n, S, I] f32/f64,
    delta [C, n, S, O] with a's n, S and dtype."""
    torch._check(a.dim() == 3, lambda: f"a must be [n, S, I], got {_sizes(a)}")
    torch._check(delta.dim() == 4 and delta.shape[1] == a.shape[0]
                 and delta.shape[2] == a.shape[1],
                 lambda: f"delta must be [C, n, S, O] with n, S of a {_sizes(a)}, got "
                         f"{_sizes(delta)}")
    _check_float(a, "a")
    torch._check(delta.dtype == a.dtype, lambda: "a and delta must have one dtype")


@torch.library.register_fake("fishermask_ext::masked_linear_grad")
def _(a, delta, index):
    _check_linear(a, delta)
    torch._check(index.dim() == 1 and index.dtype == torch.long,
                 lambda: "index must be [m] int64")
    return a.new_empty((a.shape[0], delta.shape[0], index.shape[0]))

def _check_conv(x, delta, kernel_size, stride, padding, dilation, groups):
    """csrc/checks.h check_conv_geometry, in its order and words: x [n, Cin, H, W] f32/f64,
    delta [C, n, O, Ho, Wo] with x's n and dtype, groups dividing Cin and O, Ho and Wo as the
    convolution gives."""
    torch._check(x.dim() == 4, lambda: f"x must be [n, Cin, H, W], got {_sizes(x)}")
    torch._check(delta.dim() == 5 and delta.shape[1] == x.shape[0],
                 lambda: f"delta must be [C, n, O, Ho, Wo] with n of x, got {_sizes(delta)}")
    _check_float(x, "x")
    torch._check(delta.dtype == x.dtype, lambda: "x and delta must have one dtype")
    kernel_size, stride, padding, dilation = map(list, (kernel_size, stride, padding, dilation))
    torch._check(all(len(v) == 2 for v in (kernel_size, stride, padding, dilation)),
                 lambda: "kernel_size, stride, padding, dilation take 2 values")
    torch._check(groups >= 1 and x.shape[1] % groups == 0 and delta.shape[2] % groups == 0,
                 lambda: f"groups={groups} must divide Cin={x.shape[1]} and O={delta.shape[2]}")
    for d in range(2):
        torch._check(kernel_size[d] >= 1 and stride[d] >= 1 and dilation[d] >= 1
                     and padding[d] >= 0,
                     lambda: f"need kernel_size, stride, dilation >= 1 and padding >= 0, got "
                             f"kernel_size={kernel_size} stride={stride} dilation={dilation} "
                             f"padding={padding}")
        span = dilation[d] * (kernel_size[d] - 1) + 1
        size = x.shape[2 + d]
        torch._check(size + 2 * padding[d] >= span,
                     lambda: f"the padded input ({size} + 2*{padding[d]}) is smaller than the "
                             f"kernel span {span}")
        out = (size + 2 * padding[d] - span) // stride[d] + 1
        torch._check(delta.shape[3 + d] == out,
                     lambda: f"delta spatial dim {d} is {delta.shape[3 + d]} but the "
                             f"convolution gives {out}")


@torch.library.register_fake("fishermask_ext::masked_conv2d_grad")
def _(x, delta, index, kernel_size, stride, padding, dilation, groups):
    _check_conv(x, delta, kernel_size, stride, padding, dilation, groups)
    torch._check(index.dim() == 1 and index.dtype == torch.long,
                 lambda: "index must be [m] int64")
    return x.new_empty((x.shape[0], delta.shape[0], index.shape[0]))


@torch.library.register_fake("fishermask_ext::fisher_linear_sq")
def _(a, delta, chunk):
    _check_linear(a, delta)
    _check_chunk(chunk)
    return a.new_empty((delta.shape[3], a.shape[2]))


@torch.library.register_fake("fishermask_ext::fisher_conv2d_sq")
def _(x, delta, kernel_size, stride, padding, dilation, groups, chunk):
    _check_conv(x, delta, kernel_size, stride, padding, dilation, groups)
    _check_chunk(chunk)
    return x.new_empty((delta.shape[2], weight_columns(x.shape[1], kernel_size, groups)))


@torch.library.register_fake("fishermask_ext::fisher_channel_sq")
def _(delta, a):
    torch._check(delta.dim() == 4 and delta.dtype in _FLOAT,
                 lambda: "delta must be [C, n, O, L] f32/f64")
    if a is not None:
        _check_shape(a, delta.shape[1:], "a")
        torch._check(a.dtype == delta.dtype, lambda: "a and delta must have one dtype")
    return delta.new_empty((delta.shape[2],))
