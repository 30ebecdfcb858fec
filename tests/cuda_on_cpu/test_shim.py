"""The shim's own checks (csrc/testing/shim_selftest.cu): a kernel that breaks the execution
model fails its launch with a message that names the problem, instead of hanging as a GPU
would; a well-formed kernel of the same shape runs. The thread scheduler's twin of this test
is csrc/testing/sanitize.py."""
import pytest
import torch

X = torch.arange(64, dtype=torch.long) * 3 + 1


def test_well_formed_block_reduction_runs(shim):
    assert int(shim.shim_selftest(X, 0)) == int(X.sum())


@pytest.mark.parametrize("kind,message", [
    (1, r"divergent __syncthreads .*thread 32 exited"),
    (2, r"divergent warp barrier or shuffle in warp 0 .*\[5: exited\]"),
    (3, r"divergent __syncthreads .*thread 32 waits at csrc/testing/shim_selftest.cu:\d+ while "
        r"others wait at csrc/testing/shim_selftest.cu:\d+"),
], ids=["barrier-some-threads-exited", "shuffle-lane-exited", "two-barriers"])
def test_divergence_is_an_error_not_a_hang(shim, kind, message):
    with pytest.raises(RuntimeError, match=message):
        shim.shim_selftest(X, kind)
