"""Loaded before any test module: pytest puts this folder on sys.path for it, so
`from testing import ...` works from every test file, also those in tests/nn and tests/al."""
import torch


def pytest_make_parametrize_id(config, val, argname):
    """A dtype parameter shows as float32/float64 in test ids (not dtype0/dtype1), so that
    `-k float64` selects by precision (benchmarks/gpu_check.sh's sanitizer stage does)."""
    if isinstance(val, torch.dtype):
        return str(val).removeprefix("torch.")
    return None
