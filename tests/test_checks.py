"""The shared argument checks (fishermask_ext/_checks.py): each rule's one error type and one
wording, tested here once; callers' tests only check that a rule is applied."""
import math

import numpy as np
import pytest
import torch

from fishermask_ext._checks import (check_bool, check_budget, check_choice, check_device,
                                    check_fraction, check_int, check_keys, check_number)


def test_check_int():
    assert check_int(3, "k", minimum=1) == 3 and type(check_int(True + 2, "k")) is int
    assert type(check_int(np.int64(4), "k")) is int
    for bad in (True, 2.0, "2", None):
        with pytest.raises(TypeError, match="k must be an int"):
            check_int(bad, "k")
    with pytest.raises(ValueError, match="k must be an int >= 1 and <= 5, got 6"):
        check_int(6, "k", minimum=1, maximum=5)
    with pytest.raises(ValueError, match="k must be an int >= 0, got -1"):
        check_int(-1, "k", minimum=0)


def test_check_bool():
    assert check_bool(False, "flag") is False
    for bad in (1, 0, "false", None):
        with pytest.raises(TypeError, match=f"flag must be True or False, got {bad!r}"):
            check_bool(bad, "flag")


def test_check_number():
    assert check_number(2, "x") == 2.0 and type(check_number(np.float32(0.5), "x")) is float
    for bad in (True, "1", None, torch.tensor(1.0)):
        with pytest.raises(TypeError, match="x must be a number, got"):
            check_number(bad, "x")
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="x must be a finite number, got"):
            check_number(bad, "x")
    with pytest.raises(ValueError, match=r"x must be > 0, got 0.0"):
        check_number(0.0, "x", positive=True)
    with pytest.raises(ValueError, match=r"x must be >= 0, got -1.0"):
        check_number(-1, "x", minimum=0)
    assert check_number(0, "x", minimum=0) == 0.0


def test_check_fraction():
    assert check_fraction(1, "f") == 1.0 and check_fraction(0.25, "f") == 0.25
    assert check_fraction(0, "f", low_open=False) == 0.0
    for bad in (0, 0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"f must be a fraction in \(0, 1\], got"):
            check_fraction(bad, "f")
    with pytest.raises(ValueError, match=r"f must be a fraction in \[0, 1\], got 2.0"):
        check_fraction(2, "f", low_open=False)
    for bad in (True, "0.1", None):            # a wrong type is a TypeError, as for numbers
        with pytest.raises(TypeError, match="f must be a number, got"):
            check_fraction(bad, "f")
    with pytest.raises(ValueError, match="f must be a finite number, got nan"):
        check_fraction(math.nan, "f")


def test_check_choice():
    assert check_choice("b", "mode", ("a", "b")) == "b"
    for bad in ("c", None, ["a"], "A"):
        with pytest.raises(ValueError, match=r"mode must be one of 'a', 'b', got "):
            check_choice(bad, "mode", ("a", "b"))
    with pytest.raises(ValueError, match="n must be one of 1, 2, got True"):
        check_choice(True, "n", (1, 2))            # True == 1, but True is not a count


def test_check_keys():
    check_keys({"a": 1}, ["a", "b"], "model 'm'")
    with pytest.raises(TypeError, match="model 'm' has no option c, d; its options: b, a$"):
        check_keys({"d": 1, "c": 2, "a": 3}, ["b", "a"], "model 'm'")


def test_check_budget():
    assert check_budget(4, 4, "points") == 4
    with pytest.raises(ValueError,
                       match="budget must be between 1 and the 4 points, got 5; ask for at most 4"):
        check_budget(5, 4, "points")
    with pytest.raises(ValueError, match="budget must be between 1 and the 4 points, got 0; ask"):
        check_budget(0, 4, "points")
    with pytest.raises(ValueError, match="between 1 and the 0 points, got 1$"):
        check_budget(1, 0, "points")                # nothing left: no "ask for at most 0"
    with pytest.raises(TypeError, match="budget must be an int"):
        check_budget(2.0, 4, "points")


def test_check_device():
    assert check_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="device 'gpu' is not a device name; use cpu, cuda"):
        check_device("gpu")
    with pytest.raises(ValueError, match=r"where \(--where\) 7.5 is not a device name"):
        check_device(7.5, "where (--where)")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device 'cuda': no CUDA device is usable here"):
            check_device("cuda")
