"""The model's state and output convention while steps A and C run: mode, device, logits."""
import contextlib
import hashlib

import torch

__all__ = ["eval_mode", "eval_with_grad", "model_device", "logits_of", "model_fingerprint"]


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


def model_fingerprint(model):
    """A stable hash (hex SHA-256) of the model's class and state: every parameter and buffer of
    its state_dict by name, dtype, shape and bytes. Two models that compute the same embeddings
    from the same state share it, whatever device they sit on."""
    h = hashlib.sha256(f"{type(model).__module__}.{type(model).__qualname__}".encode())
    for name, t in model.state_dict().items():
        t = t.detach().to("cpu").contiguous()
        h.update(repr((name, str(t.dtype), tuple(t.shape))).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())     # raw bytes, any dtype
    return h.hexdigest()
