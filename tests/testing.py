"""Shared test parameters: the devices and dtypes every op is checked on."""
import pytest
import torch

from fishermask_ext import native_available

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
DTYPES = [torch.float32, torch.float64]


def needs_native(device, name="greedy_select"):
    """Skip marker for native-vs-twin tests when the extension was not built for `device`."""
    return pytest.mark.skipif(not native_available(device, name),
                              reason=f"fishermask_ext native {name} not built for {device}")


def require_native(device, name="greedy_select"):
    """Inside a test: skip it when the native op is missing for `device`."""
    if not native_available(device, name):
        pytest.skip(f"fishermask_ext native {name} not built for {device}")
