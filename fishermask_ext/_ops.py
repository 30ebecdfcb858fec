"""Loads the compiled ops, registers their fake kernels, and picks native op or twin."""
import torch

from . import reference

try:
    from . import _C  # noqa: F401  (its static initialisers register torch.ops.fishermask_ext)
    _IMPORT_ERROR = None
except ImportError as exc:  # a source checkout that was never built, or a broken build
    _IMPORT_ERROR = exc

BACKENDS = ("auto", "native", "torch")


def native_available(device="cpu", name="greedy_select"):
    """True when the compiled extension has a kernel of op `name` for `device`."""
    if _IMPORT_ERROR is not None:
        return False
    key = {"cpu": "CPU", "cuda": "CUDA"}.get(torch.device(device).type)
    return key is not None and torch._C._dispatch_has_kernel_for_dispatch_key(
        f"fishermask_ext::{name}", key)


def resolve(name, device, backend="auto"):
    """The callable for op `name` on `device`: the native op or its pure-PyTorch twin."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch" or (backend == "auto" and not native_available(device, name)):
        return getattr(reference, name)
    if not native_available(device, name):
        why = f" ({_IMPORT_ERROR})" if _IMPORT_ERROR is not None else ""
        raise RuntimeError(
            f"backend='native' but fishermask_ext has no compiled kernel for device "
            f"{torch.device(device)}{why}; build it with `pip install --no-build-isolation -e .` "
            f"(CUDA kernels need a CUDA build of torch), or use backend='auto' or 'torch'")
    return getattr(torch.ops.fishermask_ext, name).default


if _IMPORT_ERROR is None:
    @torch.library.register_fake("fishermask_ext::trace_ratio_step")
    def _(A, B, X, UV, scale, S, Q, eligible, sigma, round_scores=False):
        return A.new_empty(A.shape[:1]), A.new_empty((), dtype=torch.long)

    @torch.library.register_fake("fishermask_ext::greedy_select")
    def _(X, P0, F, scale, budget, n_forward, chunk, round_scores=False):
        return X.new_empty((budget,), dtype=torch.long)

    @torch.library.register_fake("fishermask_ext::masked_linear_grad")
    def _(a, delta, index):
        return a.new_empty((a.shape[0], delta.shape[0], index.shape[0]))

    @torch.library.register_fake("fishermask_ext::masked_conv2d_grad")
    def _(x, delta, index, kernel_size, stride, padding, dilation, groups):
        return x.new_empty((x.shape[0], delta.shape[0], index.shape[0]))
