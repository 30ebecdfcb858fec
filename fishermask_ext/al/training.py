"""Training and evaluation of one round's model: what the loop times and the warm-up runs; and
the pieces of the reference training rule that torch has no batch form of: the per-image random
crop and flip, and the round-to-round reset of Conv and Linear layers that keeps BatchNorm."""
import inspect
import json
import math
import numbers

import torch
import torch.nn.functional as F
from torch import nn

from ..nn import MODELS, get_model, logits_of

__all__ = ["build_model", "train_model", "evaluate", "SGD_MOMENTUM", "crop_flip",
           "reset_conv_linear", "CROP_PADDING"]

# The conventional SGD momentum; not a config key (the default optimizer is adam).
SGD_MOMENTUM = 0.9


def build_model(name, sample_shape, num_classes, options=None):
    """nn.get_model(name) with the input shape and class count filled in where it takes them;
    a ValueError naming --model-option when an option's value cannot build the model."""
    auto = dict(in_features=math.prod(sample_shape), in_channels=sample_shape[0],
                input_size=sample_shape[-1], num_classes=num_classes)
    params = inspect.signature(MODELS[name]).parameters if name in MODELS else {}
    for key, value in (options or {}).items():
        if key in params:
            _check_option(name, key, value, params[key].default)
    kwargs = {**{k: v for k, v in auto.items() if k in params}, **(options or {})}
    try:
        return get_model(name, **kwargs)
    except (RuntimeError, ValueError, TypeError) as exc:
        if name not in MODELS or str(exc).startswith(f"model {name!r}"):   # already says so
            raise
        raise ValueError(f"model {name!r} cannot be built with options {options or {}} "
                         f"({str(exc).splitlines()[0]}); fix --model-option") from None


def _check_option(name, key, value, default):
    """TypeError unless `value` has the kind of the constructor's default (a list of ints for
    a tuple of ints): the constructor's own error would be torch's, about tensor sizes."""
    def kind(v):
        if isinstance(v, bool) or v is None:
            return type(v).__name__
        if isinstance(v, numbers.Integral):
            return "int"
        if isinstance(v, numbers.Real):
            return "number"
        if isinstance(v, (list, tuple)):
            return "list of " + (kind(v[0]) if v else "int") + "s"
        return type(v).__name__
    want = kind(default)
    if default is inspect.Parameter.empty or default is None or kind(value) == want or (
            want == "number" and kind(value) == "int"):
        return
    example = json.dumps(list(default) if isinstance(default, tuple) else default)
    article = "an" if want[0] in "aeiou" else "a"
    raise TypeError(f"model {name!r}: --model-option {key}={json.dumps(value)} must be "
                    f"{article} {want} like its default, e.g. {key}={example}")


def train_model(model, x, y, config, generator):
    """Train on (x, y) for config["epochs"] epochs, or until the training accuracy reaches
    config["train_accuracy"] (at most config["epochs"] epochs). Returns the last epoch's accuracy.

    config["augment"] "crop_flip" transforms every batch (crop_flip, drawn from `generator`);
    config["grad_clamp"] c clamps every gradient element to [-c, c] before each step, as the
    reference does."""
    device, n, bs = config["device"], len(y), config["batch_size"]
    opt_cls = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[config["optimizer"]]
    extra = {"momentum": SGD_MOMENTUM} if config["optimizer"] == "sgd" else {}
    opt = opt_cls(model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"],
                  **extra)
    model.train()
    acc = 0.0
    for _ in range(config["epochs"]):
        perm, correct, seen = torch.randperm(n, generator=generator), 0, 0
        for s in range(0, n, bs):
            idx = perm[s:s + bs]
            if len(idx) == 1 and n > 1:   # BatchNorm cannot train on a batch of one
                continue
            xb = crop_flip(x[idx], generator) if config["augment"] == "crop_flip" else x[idx]
            logits = logits_of(model(xb.to(device)))
            loss = F.cross_entropy(logits, y[idx].to(device))
            opt.zero_grad()
            loss.backward()
            if config["grad_clamp"] is not None:
                torch.nn.utils.clip_grad_value_(model.parameters(), config["grad_clamp"])
            opt.step()
            correct += int((logits.argmax(1).cpu() == y[idx]).sum())
            seen += len(idx)
        acc = correct / max(seen, 1)
        if config["train_accuracy"] is not None and acc >= config["train_accuracy"]:
            break
    return acc


@torch.no_grad()
def evaluate(model, x, y, device, batch_size=512):
    """Accuracy of `model` (eval mode) on (x, y)."""
    model.eval()
    correct = sum(int((logits_of(model(x[s:s + batch_size].to(device))).argmax(1).cpu()
                       == y[s:s + batch_size]).sum()) for s in range(0, len(y), batch_size))
    return correct / max(len(y), 1)


CROP_PADDING = 4     # RandomCrop(32, padding=4) of the reference's CIFAR-10 transform


def crop_flip(x, generator, padding=CROP_PADDING):
    """A random crop of each image's own size after zero padding by `padding` pixels, then a
    horizontal flip with probability 1/2, drawn per image from `generator`.

    x: [n, C, H, W] (already normalised, so the zero padding is the pool's mean colour, where
    torchvision pads black pixels before normalising). Written here because torchvision's
    transforms draw one crop per call, not one per image of a batch, and torchvision is not a
    dependency of the driver.
    """
    n, _, h, w = x.shape
    padded = F.pad(x, (padding,) * 4)
    top = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    left = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    rows = top[:, None] + torch.arange(h)                                     # [n, H]
    cols = left[:, None] + torch.arange(w)                                    # [n, W]
    cols = torch.where(flip[:, None], cols.flip(1), cols)   # a flip reads the columns reversed
    # Advanced indices on dims 0, 2, 3 around a slice: the result is [n, H, W, C].
    out = padded[torch.arange(n)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


def reset_conv_linear(model):
    """Re-initialise every Conv and Linear layer of `model` in place (their own
    reset_parameters, from torch's global generator); BatchNorm weights and running statistics
    stay as they are, as in the reference's per-round reset."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
            module.reset_parameters()
