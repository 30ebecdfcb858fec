"""The CPU-run CUDA tests can fail: the step kernels with one planted slip each (conftest.PLANTED,
compiled into their own op namespaces) fail the checks that the real kernels pass."""
import pytest
import torch

from test_step_kernels import assert_same_step, run_both, step_args


def test_planted_off_by_one_is_caught(shim):
    op = torch.ops.planted_off_by_one.trace_ratio_step
    (mine, got), (twin, ref) = run_both(op, step_args(21, 3, 37, torch.float64), 1.0)
    with pytest.raises(AssertionError):
        assert_same_step(mine, got, twin, ref)


def test_planted_wrong_comparison_is_caught(shim):
    op = torch.ops.planted_comparison.trace_ratio_step
    (mine, got), (twin, ref) = run_both(op, step_args(60, 3, 11, torch.float64, ties=True), 1.0)
    with pytest.raises(AssertionError):
        assert_same_step(mine, got, twin, ref)
