"""Argument checks shared by every layer (select, nn, al): one wording for each rule."""
import numbers

import torch

__all__ = ["check_int", "check_bool", "check_budget", "check_device"]


def check_int(value, name, minimum=None, maximum=None):
    """`value` as an int; TypeError unless it is an integer (bool is not: `True` as a count is
    a bug, not a 1), ValueError outside [minimum, maximum] (either bound may be None)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        low = "" if minimum is None else f" >= {minimum}"
        high = "" if maximum is None else f" <= {maximum}"
        raise ValueError(f"{name} must be an int{low}{' and' if low and high else ''}{high}, "
                         f"got {value}")
    return value


def check_bool(value, name):
    """`value` unchanged; TypeError unless it is True or False (not 0/1, not "false")."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def check_budget(budget, available, what):
    """`budget` as an int in 1..available; `what` names the points it is drawn from (the
    error says how many are left, so the caller sees why a budget that fit earlier fails)."""
    budget = check_int(budget, "budget")
    if not 1 <= budget <= available:
        raise ValueError(f"budget must be between 1 and the {available} {what}, got {budget}"
                         + (f"; ask for at most {available}" if available >= 1 else ""))
    return budget


def check_device(device, name="device"):
    """torch.device(device) when this machine can allocate on it; else a ValueError naming
    `name`, the device and what to pass instead ("gpu" is not a device name; "cuda" on a
    machine without CUDA)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"{name} {device!r} is not a device name; use cpu, cuda, cuda:<index> "
                         f"or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise ValueError(f"{name} {device!r}: no CUDA device is usable here (torch "
                         f"{torch.__version__}, {build}); use cpu")
    try:
        torch.empty(0, device=dev)     # the one test that covers every backend's availability
    except (RuntimeError, AssertionError) as exc:   # AssertionError: torch built without it
        raise ValueError(f"{name} {device!r} is not usable here ({str(exc).split('. ')[0]}); "
                         f"use cpu") from None
    return dev
