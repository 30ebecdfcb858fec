"""Argument checks shared by every layer (ops to adapters): one wording for each rule, one error
type for each (TypeError for a wrong type, ValueError for a value out of range or choices)."""
import math
import numbers

import torch

__all__ = ["check_int", "check_bool", "check_number", "check_fraction", "check_choice",
           "check_keys", "check_budget", "check_device"]


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


def check_number(value, name, *, positive=False, minimum=None):
    """`value` as a finite float; TypeError unless it is a real number (bool is not),
    ValueError for NaN or ±Inf (NaN passes every comparison), for value <= 0 with `positive`,
    and below `minimum` (None: no bound)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if positive and not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return value


def check_fraction(value, name, low_open=True):
    """`value` as a float in (0, 1] (low_open: a share that must keep something) or [0, 1];
    TypeError unless it is a real number (bool is not), ValueError outside the interval."""
    value = check_number(value, name)
    if not (0 < value <= 1 if low_open else 0 <= value <= 1):
        raise ValueError(f"{name} must be a fraction in {'(' if low_open else '['}0, 1], got "
                         f"{value!r}")
    return value


def check_choice(value, name, choices):
    """`value` unchanged; ValueError unless it is one of `choices` (the message lists them in
    the order given). A value of another type than the choices is not one of them (True is
    not 1)."""
    if not any(isinstance(value, type(c)) and isinstance(value, bool) == isinstance(c, bool)
               and value == c for c in choices):
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got "
                         f"{value!r}")
    return value


def check_keys(given, valid, owner):
    """TypeError naming the keyword options in `given` that `owner` (e.g. "strategy 'bait'")
    does not have, and listing those it has (in the order of `valid`)."""
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise TypeError(f"{owner} has no option {', '.join(unknown)}; its options: "
                        f"{', '.join(valid)}")


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
