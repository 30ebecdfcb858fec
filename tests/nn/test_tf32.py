"""TF32 stays off in steps A and C whatever the global switches say (issue 22, item 5).

On CUDA, cuDNN convolutions use TF32 by default and cuBLAS when a user allows it; that would
round the float32 inputs of the captured passes and of the fisher ops' products to 10 mantissa
bits. The passes run inside state.no_tf32; the native fisher ops hold at::NoTF32Guard."""
import pytest
import torch
from torch import nn

from fishermask_ext import ParamMask, fisher_diagonal, masked_grad_embeddings
from fishermask_ext.ops import reference
from fishermask_ext.testing import tol
from op_cases import op_terms
from testing import require_native


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 4))


class _Switches:
    """Both global TF32 switches set on for the block (restored after)."""

    def __enter__(self):
        self.saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True

    def __exit__(self, *exc):
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self.saved


@pytest.mark.parametrize("step", ["fisher_diagonal", "masked_grad_embeddings"])
def test_captured_passes_run_without_tf32(step):
    model, x = _model(), torch.randn(5, 2, 4, 4)
    seen = []
    model[0].register_forward_hook(lambda *_: seen.append(
        (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)))
    with _Switches():
        if step == "fisher_diagonal":
            fisher_diagonal(model, x)
        else:
            masked_grad_embeddings(model, x, ParamMask(model, {"3.weight": [0, 5], "0.bias": [1]}))
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (True, True)
    assert seen and set(seen) == {(False, False)}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="TF32 exists on CUDA only")
def test_fisher_ops_ignore_the_global_tf32_switch():
    require_native("cuda", "fisher_linear_sq")
    g = torch.Generator().manual_seed(1)
    a, delta = torch.randn(64, 3, 40, generator=g), torch.randn(4, 64, 3, 30, generator=g)
    a, delta = a.cuda(), delta.cuda()
    truth = reference.fisher_linear_sq(a.double(), delta.double(), 16)
    with _Switches():
        got = torch.ops.fishermask_ext.fisher_linear_sq(a, delta, 16)
    # float32's bound; TF32 rounds every input to 2^-11, alone 16 times more than this allows.
    bound = tol(torch.float32, terms=op_terms("fisher_linear_sq", [a, delta]),
                magnitude=reference.fisher_linear_sq(a.double().abs(), delta.double().abs(), 16))
    torch.testing.assert_close(got.double(), truth, **bound)
