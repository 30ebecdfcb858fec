"""Training and evaluation of one round's model: what the loop times and the warm-up runs."""
import inspect
import math

import torch
import torch.nn.functional as F

from ..nn import MODELS, get_model, logits_of

__all__ = ["build_model", "train_model", "evaluate", "SGD_MOMENTUM"]

# The conventional SGD momentum; not a config key (the default optimizer is adam).
SGD_MOMENTUM = 0.9


def build_model(name, sample_shape, num_classes, options=None):
    """nn.get_model(name) with the input shape and class count filled in where it takes them."""
    auto = dict(in_features=math.prod(sample_shape), in_channels=sample_shape[0],
                input_size=sample_shape[-1], num_classes=num_classes)
    params = inspect.signature(MODELS[name]).parameters if name in MODELS else {}
    return get_model(name, **{**{k: v for k, v in auto.items() if k in params},
                              **(options or {})})


def train_model(model, x, y, config, generator):
    """Train on (x, y) for config["epochs"] epochs, or until the training accuracy reaches
    config["train_accuracy"] (at most config["epochs"] epochs). Returns the last epoch's accuracy."""
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
            logits = logits_of(model(x[idx].to(device)))
            loss = F.cross_entropy(logits, y[idx].to(device))
            opt.zero_grad()
            loss.backward()
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
