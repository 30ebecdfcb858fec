"""The ops layer: loads the compiled ops (csrc/ops.cpp), registers their fake kernels
(fakes.py), and picks the native op or its pure-PyTorch twin (reference.py) per device."""
import warnings

import torch

from .._checks import check_choice
from . import reference

try:
    from . import _C  # noqa: F401  (its static initialisers register torch.ops.fishermask_ext)
    _IMPORT_ERROR = None
except ImportError as exc:  # a source checkout that was never built, or a broken build
    _IMPORT_ERROR = exc

BACKENDS = ("auto", "native", "torch")


# The greedy loop and the commit are written once over ATen (CompositeExplicitAutograd): they
# are native wherever the device has the step kernel they drive.
_DRIVES = {"greedy_select": "trace_ratio_step", "trace_ratio_init": "trace_ratio_step",
           "factored_step": "trace_ratio_update"}


def _has_kernel(name, key):
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key(f"fishermask_ext::{name}", key)
    except RuntimeError:       # an op this build does not have (an older build in place)
        return False


_REBUILD = ("rebuild it with `pip install --no-build-isolation -e .` in the source checkout "
            "(CUDA kernels need a CUDA build of torch)")
_warned_import = False


def _warn_import_error_once():
    """Say once per process that the compiled ops failed to load, so that backend="auto"
    running the pure-PyTorch twins is never a silent switch."""
    global _warned_import
    if not _warned_import:
        _warned_import = True
        warnings.warn(f"fishermask_ext: the compiled ops did not load ({_IMPORT_ERROR}); "
                      f"backend='auto' runs the pure-PyTorch twins; {_REBUILD}",
                      RuntimeWarning, stacklevel=3)


def native_available(device="cpu", name="greedy_select"):
    """True when the compiled extension has a kernel of op `name` for `device`."""
    if _IMPORT_ERROR is not None:
        _warn_import_error_once()
        return False
    key = {"cpu": "CPU", "cuda": "CUDA"}.get(torch.device(device).type)
    if key is None:
        return False
    name = _DRIVES.get(name, name)
    return _has_kernel(name, key) or _has_kernel(name, "CompositeExplicitAutograd")


def resolve(name, device, backend="auto"):
    """The callable for op `name` on `device`: the native op or its pure-PyTorch twin."""
    check_choice(backend, "backend", BACKENDS)
    if backend == "torch" or (backend == "auto" and not native_available(device, name)):
        return getattr(reference, name)
    if not native_available(device, name):
        why = f" ({_IMPORT_ERROR})" if _IMPORT_ERROR is not None else ""
        raise RuntimeError(
            f"backend='native' but fishermask_ext has no compiled kernel for device "
            f"{torch.device(device)}{why}; {_REBUILD}, or use backend='auto' or 'torch'")
    return getattr(torch.ops.fishermask_ext, name).default


if _IMPORT_ERROR is None:
    from . import fakes  # noqa: F401,E402  (registers the fake kernels of the compiled ops)
