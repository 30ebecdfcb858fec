"""Layer capture shared by fisher.py (step A) and embeddings.py (step C) of ALGORITHM.md.

One forward pass records, for every call of the hooked modules, the module's input and the
gradient edge of its output. The edge is taken before the model can rewrite that output in
place (ResNet's `out += shortcut(x)`, `ReLU(inplace=True)`), so the backward passes that follow
give δ, the gradient at the output the module really produced. Those passes stop at the
earliest hooked module and compute activation gradients only, never parameter gradients.
Also here: the one helper that walks `data` in batches, and the per-module-type views of a
recorded call that both steps build their per-sample gradients from.
"""
import contextlib
import functools
from collections import Counter
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.graph import get_gradient_edge
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import BatchSampler, DataLoader, SequentialSampler, Subset
from torch.utils.data.dataloader import _InfiniteConstantSampler

SUPPORTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d)
WEIGHTINGS = ("sqrt_p", "none")


def num_samples(data):
    """Number of samples in `data` (Tensor, Dataset or DataLoader); None if it has no length."""
    try:
        return len(data.dataset if isinstance(data, DataLoader) else data)
    except TypeError:
        return None


def take(data, indices):
    """The samples `indices` [k] of `data`, as the same kind of container."""
    if torch.is_tensor(data):
        return data[indices.to(data.device)]
    if isinstance(data, DataLoader):
        return DataLoader(Subset(data.dataset, indices.tolist()), batch_size=data.batch_size,
                          collate_fn=data.collate_fn, num_workers=data.num_workers)
    return Subset(data, indices.tolist())


def _check_in_order(loader):
    """Raises unless `loader` visits its dataset in storage order (the rows of the embeddings
    must follow the pool's order): its sampler, and the sampler inside a BatchSampler."""
    samplers = [loader.sampler]
    if loader.batch_sampler is not None:
        if not isinstance(loader.batch_sampler, BatchSampler):
            raise ValueError(f"the DataLoader batches with a custom "
                             f"{type(loader.batch_sampler).__name__}, whose order cannot be "
                             f"checked; pass one with shuffle=False (or the Dataset itself)")
        samplers.append(loader.batch_sampler.sampler)
    for sampler in samplers:
        if not isinstance(sampler, (SequentialSampler, _InfiniteConstantSampler)):
            raise ValueError(f"the DataLoader draws with {type(sampler).__name__}, so its "
                             f"batches would not follow the pool's order; pass one with "
                             f"shuffle=False (or the Dataset itself)")


def iter_batches(data, batch_size, device):
    """Input batches [n, ...] of `data` on `device`, in storage order. Items may be inputs or
    (inputs, labels, ...) tuples; a DataLoader keeps its own batch size."""
    if torch.is_tensor(data):
        batches = data.split(batch_size)
    elif isinstance(data, DataLoader):
        _check_in_order(data)
        batches = data
    else:
        batches = DataLoader(data, batch_size=batch_size)
    for batch in batches:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        yield x.to(device)


def owners(model, names):
    """{module name: (module, [parameter attribute, ...])} owning the parameters `names`;
    raises TypeError for a module whose per-sample gradients step C does not implement."""
    holders = Counter(id(p) for m in model.modules() for p in m.parameters(recurse=False))
    params = dict(model.named_parameters())
    found = {}
    for name in names:
        mod_name, _, attr = name.rpartition(".")
        module = model.get_submodule(mod_name)
        where = f"module {mod_name or '<root>'!r} ({type(module).__name__}), parameter {name!r}"
        if not isinstance(module, SUPPORTED) or attr not in ("weight", "bias"):
            kinds = ", ".join(t.__name__ for t in SUPPORTED)
            raise TypeError(f"{where}: per-sample gradients are implemented for the weight and "
                            f"bias of {kinds} only")
        if holders[id(params[name])] > 1:
            raise TypeError(f"{where}: parameters shared by several modules are not supported")
        if getattr(module, "padding_mode", "zeros") != "zeros":
            raise TypeError(f"{where}: only padding_mode='zeros' is supported")
        if isinstance(module, _BatchNorm) and module.running_mean is None:
            raise TypeError(f"{where}: BatchNorm without running statistics normalises with "
                            f"batch statistics even in eval mode, so samples would interact")
        found.setdefault(mod_name, (module, []))[1].append(attr)
    return found


@contextlib.contextmanager
def eval_with_grad(model):
    """Every submodule in eval mode and autograd on inside the block, even within a caller's
    no_grad or inference_mode block; each submodule's own mode is restored after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            yield
    finally:
        for m, mode in modes:
            m.training = mode


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


def class_seeds(logits, weighting):
    """[C, n, C]: row c seeds the logits [n, C] with w_c (e_c − p), p = softmax detached;
    w_c = sqrt(p_c) for "sqrt_p", 1 for "none"."""
    p = torch.softmax(logits.detach(), dim=1)                      # [n, C]
    eye = torch.eye(p.shape[1], dtype=p.dtype, device=p.device)
    seeds = eye[:, None, :] - p                                     # [C, n, C]
    return seeds * p.T.sqrt()[:, :, None] if weighting == "sqrt_p" else seeds


class Call(NamedTuple):
    """One recorded call of a hooked module."""
    module_name: str
    a: torch.Tensor          # the module's input [n, ...], detached
    version: int             # a._version when recorded, to catch a later in-place write
    edge: object             # GradientEdge of the output as produced, or None
    shape: torch.Size        # output shape [n, ...]


class LayerCapture:
    """Records the calls of `modules` ({name: module} of `model`) in one forward pass."""

    def __init__(self, model, modules):
        self.model, self.modules, self.calls = model, modules, []

    def forward(self, x):
        """Logits [n, C] of the batch x [n, ...], recording the hooked modules' calls (inside
        eval_with_grad)."""
        self.calls = []
        hooks = [m.register_forward_hook(functools.partial(self._record, name))
                 for name, m in self.modules.items()]
        x = x.clone() if x.is_inference() else x.detach()
        try:        # a float input that requires grad gives every output an edge, even with
            out = self.model(x.requires_grad_() if x.is_floating_point() else x)   # frozen params
        finally:
            for h in hooks:
                h.remove()
        logits = logits_of(out)
        if logits.dim() != 2:
            raise ValueError(f"the model must return logits [n, C] (or a tuple starting with "
                             f"them), got shape {tuple(logits.shape)}")
        if not bool(torch.isfinite(logits).all()):
            raise FloatingPointError("the model returned NaN or Inf logits")
        return logits

    def _record(self, name, module, inputs, output):
        a = inputs[0].detach()
        edge = get_gradient_edge(output) if output.requires_grad else None
        self.calls.append(Call(name, a, a._version, edge, output.shape))

    def deltas(self, logits, seeds):
        """For each class c, [δ_c [n, *out_shape] per recorded call]: the output gradients when
        the logits are seeded with seeds[c] [n, C]. The call that produced the logits gets
        seeds[c] itself, without a backward pass."""
        top = get_gradient_edge(logits) if logits.requires_grad else None
        inner = [i for i, call in enumerate(self.calls) if top is None or call.edge != top]
        for i in inner:
            if self.calls[i].edge is None:
                raise RuntimeError(f"the output of module {self.calls[i].module_name!r} does "
                                   f"not depend on anything that requires grad")
        for c, seed in enumerate(seeds):
            grads = torch.autograd.grad(logits, [self.calls[i].edge for i in inner], seed,
                                        retain_graph=c + 1 < len(seeds),
                                        allow_unused=True) if inner else ()
            deltas = [seed] * len(self.calls)
            for i, g in zip(inner, grads):
                deltas[i] = g if g is not None else seed.new_zeros(self.calls[i].shape)
            yield deltas


class View(NamedTuple):
    """A recorded call in the form the per-sample gradient formulas use."""
    kind: str                # "linear", "conv" or "bn"
    a: torch.Tensor          # linear: input [n, S, I]; conv: input [n, Cin, H, W];
                             # bn: normalised input x̂ [n, O, L]
    geometry: tuple          # conv: (kernel_size, stride, padding, dilation, groups), 2-D


def input_view(module, call):
    """The View of `call` of `module` (an instance of SUPPORTED)."""
    a = call.a
    if a._version != call.version:
        raise RuntimeError(f"the input of module {call.module_name!r} was modified in place "
                           f"after the module ran; per-sample gradients need it unchanged")
    n = a.shape[0]
    if isinstance(module, nn.Linear):
        return View("linear", a.reshape(n, -1, a.shape[-1]), ())
    if isinstance(module, _BatchNorm):
        shape = (1, -1) + (1,) * (a.dim() - 2)
        xhat = (a - module.running_mean.view(shape)) * torch.rsqrt(
            module.running_var.view(shape) + module.eps)
        return View("bn", xhat.reshape(n, a.shape[1], -1), ())
    k, s, d, pad = module.kernel_size, module.stride, module.dilation, module.padding
    if isinstance(pad, str):  # "valid" or "same": pad as F.conv does (odd extra on the right)
        totals = [di * (ki - 1) if pad == "same" else 0 for ki, di in zip(k, d)]
        a = F.pad(a, [q for t in reversed(totals) for q in (t // 2, t - t // 2)])
        pad = (0,) * len(k)
    if isinstance(module, nn.Conv1d):         # as a Conv2d over a [1, L] image
        a, k, s, pad, d = a.unsqueeze(2), (1, *k), (1, *s), (0, *pad), (1, *d)
    return View("conv", a, (list(k), list(s), list(pad), list(d), module.groups))


def delta_view(view, delta):
    """delta [C, n, *out_shape] in the layout of `view`'s kind: linear [C, n, S, O];
    conv [C, n, O, Ho, Wo]; bn [C, n, O, L]."""
    C, n = delta.shape[:2]
    if view.kind == "linear":
        return delta.reshape(C, n, -1, delta.shape[-1])
    if view.kind == "bn":
        return delta.reshape(C, n, delta.shape[2], -1)
    return delta if delta.dim() == 5 else delta.unsqueeze(3)


def channel_deltas(view, delta):
    """delta in `view`'s layout (see delta_view) as [C, n, O, L]: output channel, then every
    position that channel's bias (or BatchNorm γ, β) contributes to."""
    if view.kind == "linear":
        return delta.transpose(2, 3)
    return delta.flatten(3)
