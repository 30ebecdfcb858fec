"""Hooks and views shared by fisher.py (step A) and embeddings.py (step C) of docs/ALGORITHM.md.

One forward pass records, for every call of the hooked modules, the module's input and the
gradient edge of its output. The edge is taken before the model can rewrite that output in
place (ResNet's `out += shortcut(x)`, `ReLU(inplace=True)`), so the backward passes that follow
give δ, the gradient at the output the module really produced. Those passes stop at the
earliest hooked module and compute activation gradients only, never parameter gradients.
Also here: the per-module-type views of a recorded call that both steps build their
per-sample gradients from.
"""
import functools
import math
from collections import Counter
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.graph import get_gradient_edge
from torch.nn.modules.batchnorm import _BatchNorm

from .state import logits_of

SUPPORTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d)
WEIGHTINGS = ("sqrt_p", "none")


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


def class_seeds(logits, weighting):
    """[C, n, C]: row c seeds the logits [n, C] with w_c (e_c − p), p = softmax detached;
    w_c = sqrt(p_c) for "sqrt_p", 1 for "none"."""
    p = torch.softmax(logits.detach(), dim=1)                      # [n, C]
    eye = torch.eye(p.shape[1], dtype=p.dtype, device=p.device)
    seeds = eye[:, None, :] - p                                     # [C, n, C]
    return seeds * p.T.sqrt()[:, :, None] if weighting == "sqrt_p" else seeds


# Up to this many classes fisher_seeds factors S by eigh; above it, the O(n·C³) eigh (and its
# n·C² float64 memory, which fisher_rows does not count) would outgrow the 1/C it saves, and
# the C class seeds are used as they are.
FISHER_SEEDS_EIGH_MAX_CLASSES = 32


def fisher_seed_count(C):
    """The number of seeds fisher_seeds gives for C classes."""
    return C - 1 if 2 <= C <= FISHER_SEEDS_EIGH_MAX_CLASSES else C


def fisher_seeds(logits):
    """[r, n, C], r = fisher_seed_count(C) (C − 1 for 2 ≤ C ≤ 32, else C): seeds whose products give step A's sum over all C
    classes. For one sample, Σ_c p_c ∇log p_c ∇log p_cᵀ = Jᵀ S J, J = ∂z/∂θ and
    S = Σ_c p_c (e_c − p)(e_c − p)ᵀ = diag(p) − ppᵀ, the Fisher of the softmax (p detached).
    Any factor S = A Aᵀ gives the same Fisher, Σ_i (a_iᵀ J)², and S 𝟙 = p − p(pᵀ𝟙) = 0, so S
    has rank at most C − 1: its eigenvalues are ≥ 0, the smallest is 0 (eigenvector 𝟙/√C), and
    the other C − 1 eigenpairs, a_i = sqrt(λ_i) v_i, factor it with one seed fewer than the C
    rows sqrt(p_c)(e_c − p) of class_seeds: every backward pass and every product of step A
    scales with the seed count, so this saves 1/C of them (half at C = 2).

    Formed in float64, then cast: eigh is backward stable, so A Aᵀ = S + E with
    ‖E‖ ≈ 1e-16 ‖S‖, far below the float32 rounding of the seeds themselves; the dropped
    eigenvalue is 0 up to that E (a second zero, when some p_c underflows to 0, is kept as a
    zero seed). For C = 1 (S = 0) or C > FISHER_SEEDS_EIGH_MAX_CLASSES: class_seeds(logits,
    "sqrt_p")."""
    C = logits.shape[1]
    if fisher_seed_count(C) == C:
        return class_seeds(logits, "sqrt_p")
    p = torch.softmax(logits.detach().double(), dim=1)                 # [n, C]
    S = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]            # [n, C, C]
    lam, V = torch.linalg.eigh(S)                                      # ascending
    A = V[:, :, 1:] * lam[:, None, 1:].clamp_min(0).sqrt()             # [n, C, C − 1]
    return A.permute(2, 0, 1).to(logits.dtype).contiguous()


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

    def forward(self, x, grad=True):
        """Logits [n, C] of the batch x [n, ...], recording the hooked modules' calls (inside
        eval_with_grad). grad=False: under no_grad, no autograd graph and no edges (a caller
        that needs no backward pass: factored embeddings of a classifier-only mask)."""
        self.calls = []
        hooks = [m.register_forward_hook(functools.partial(self._record, name))
                 for name, m in self.modules.items()]
        x = x.clone() if x.is_inference() else x.detach()
        try:        # a float input that requires grad gives every output an edge, even with
            if not grad:                                                   # frozen params
                with torch.no_grad():
                    out = self.model(x)
            else:
                out = self.model(x.requires_grad_() if x.is_floating_point() else x)
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


def stacked_deltas(capture, logits, seeds, keep=None, sample_major=False):
    """Per recorded call i, its output gradients for all seeds at once, [C, n, *out_shape]
    (capture.deltas stacked over the classes), each first narrowed by keep(i, delta) if given.
    sample_major: stored as [n, C, *out_shape] (the result is its transposed view), the layout
    in which step A's per-sample products join a sample's C classes without a copy."""
    kept = [None] * len(capture.calls)
    for c, deltas in enumerate(capture.deltas(logits, seeds)):
        for i, delta in enumerate(deltas):
            delta = keep(i, delta) if keep is not None else delta
            if kept[i] is None:
                kept[i] = (delta.new_empty((delta.shape[0], len(seeds), *delta.shape[1:]))
                           .transpose(0, 1) if sample_major
                           else delta.new_empty((len(seeds), *delta.shape)))
            kept[i][c] = delta
    return kept


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
        # explicit L: -1 is ambiguous for an empty batch
        return View("bn", xhat.reshape(n, a.shape[1], math.prod(a.shape[2:])), ())
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
