"""The model's state and output convention while steps A and C run: mode, device, logits."""
import contextlib

import torch

__all__ = ["eval_mode", "eval_with_grad", "model_device", "logits_of"]


@contextlib.contextmanager
def eval_mode(model):
    """Every submodule in eval mode inside the block; each submodule's own mode is restored
    after (not `model.train(was_training)`, which would flatten a caller's mixed modes)."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


@contextlib.contextmanager
def eval_with_grad(model):
    """eval_mode with autograd on inside the block, even within a caller's no_grad or
    inference_mode block."""
    with eval_mode(model), torch.inference_mode(False), torch.enable_grad():
        yield


def model_device(model, device):
    """`device` if given, else the device of the model's first parameter or buffer (or CPU)."""
    if device is not None:
        return torch.device(device)
    first = next(iter([*model.parameters(), *model.buffers()]), None)
    return first.device if first is not None else torch.device("cpu")


def logits_of(out):
    """The logits of a model output: the output itself, or the first item of a (logits, ...)
    tuple or list (models that also return their penultimate features)."""
    return out[0] if isinstance(out, (tuple, list)) else out
