"""The model's state and output convention while steps A and C run: mode, device, logits."""
import contextlib
import hashlib

import torch

from .._checks import check_device

__all__ = ["eval_mode", "eval_with_grad", "no_tf32", "model_device", "model_dtype",
           "check_input_dtype", "logits_of", "model_fingerprint"]


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
def no_tf32():
    """TF32 off for cuBLAS and cuDNN inside the block, the caller's switches restored after.

    On CUDA, cuDNN convolutions default to TF32 (torch.backends.cudnn.allow_tf32 is True) and a
    user may turn it on for cuBLAS too; either would round the float32 inputs of the captured
    passes to 10 mantissa bits, and steps A and C would then differ by GPU generation. The
    native fisher ops pin it off in C++ (at::NoTF32Guard) for their own products."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


@contextlib.contextmanager
def eval_with_grad(model):
    """eval_mode with autograd on inside the block, even within a caller's no_grad or
    inference_mode block, and TF32 off (no_tf32): the passes that steps A and C capture."""
    with eval_mode(model), torch.inference_mode(False), torch.enable_grad(), no_tf32():
        yield


def model_device(model, device=None):
    """Where `model` runs: `device` if given (check_device), else the device of the model's
    first parameter or buffer, else the CPU (a model without either, e.g. a bare nn.ReLU)."""
    if device is not None:
        return check_device(device)
    first = next(iter([*model.parameters(), *model.buffers()]), None)
    return first.device if first is not None else torch.device("cpu")


def model_dtype(model):
    """The dtype of the model's first floating parameter; None for a model without one."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), None)


def check_input_dtype(x, dtype, name):
    """TypeError unless a floating input `x` (named `name`) has the model's dtype `dtype`
    (None: any): the model would fail inside its first layer with torch's "mat1 and mat2
    must have the same dtype". Integer inputs are left to the caller (token models)."""
    if dtype is not None and x.is_floating_point() and x.dtype != dtype:
        other = (f" or model.to({x.dtype})" if x.dtype in (torch.float32, torch.float64)
                 else "")
        raise TypeError(f"{name} is {x.dtype} but the model's parameters are {dtype}; convert "
                        f"with {name}.to({dtype}){other}")


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
