"""BAIT and FisherMask on a torch model for the DeepAL and baal adapters: the strategies
themselves (their masks, embeddings and options), returning pool positions and per-pick gains."""
import numpy as np
import torch

from .. import strategies

__all__ = ["torch_select", "skorch_module", "skorch_select"]


def torch_select(kind, model, data, labeled_mask, budget, options):
    """Strategy `kind` ("bait" or "fishermask", built with `options`) on `model` over `data`
    (every pool point, labeled or not: a Tensor, Dataset or DataLoader of inputs or (inputs,
    labels, ...) tuples, in pool order): its Strategy.select with gains. Returns numpy (picks
    [budget] int64 pool positions, all unlabeled, gains [budget] float64)."""
    strategy = strategies.get(kind, **options)
    picks, gains = strategy.select(model, data, np.asarray(labeled_mask), budget,
                                   return_gains=True)
    return picks.numpy(), gains.numpy()


def skorch_module(clf):
    """(nn.Module, device) of a fitted skorch-style classifier: scikit-activeml's
    SkorchClassifier holds a skorch NeuralNet in `neural_net_`, and a NeuralNet (modAL's way
    to a torch model) holds the initialized module in `module_`. None for a classifier seen
    only through predict_proba."""
    net = getattr(clf, "neural_net_", clf)
    module = getattr(net, "module_", None)
    if not isinstance(module, torch.nn.Module):
        return None
    return module, getattr(net, "device", None)


def skorch_select(kind, found, X, labeled_mask, budget, options, input_dtype=np.float32):
    """torch_select for a skorch classifier `found` = skorch_module(clf) over the samples X
    (every pool point, labeled or not): X goes to the module as a tensor of input_dtype (skorch
    casts inputs the same way, float32 by default), on the net's device unless options say
    otherwise. The module must return logits (or log-probabilities, whose log-softmax is
    themselves), or a tuple starting with them."""
    module, device = found
    if device is not None and options.get("device") is None:
        options = {**options, "device": device}
    data = torch.as_tensor(np.asarray(X, dtype=input_dtype))
    return torch_select(kind, module, data, labeled_mask, budget, options)
