"""Step C with the classifier block factored: masked_grad_embeddings(..., factored=True/"auto").

When the mask holds a whole nn.Linear classifier, every embedding is exactly
X_i = [G_i ⊗ h̄_iᵀ | R_i] (store/factored.py, docs/ALGORITHM.md "Factored embeddings"). The
classifier's output gradient for class c is the seed the dense path gives the logits,
w_c·(e_c − p), and its weight gradient is that seed times its input h, so

    G_i = hooks.class_seeds(logits, weighting)[:, i, :]   (the same C×C numbers, no backward)
    h̄_i = the classifier's input from the forward hook, [h_i; 1] when its bias is masked
    R_i = the other masked columns, by the dense path over those parameters only.

"The classifier" is checked, not assumed: the nn.Linear whose output IS the tensor the model
returns as logits, run once per forward pass on a 2-D input [n, d], with every weight entry
masked and its bias all masked or not at all. Anything else (a partial classifier mask, logits
rescaled after the layer, a layer run twice, whose gradient sums two outer products) is not
one outer product per class: factored=True raises a ValueError saying why, factored="auto"
gives the dense tensor. A mask of the classifier only (BAIT's) runs one forward pass under
no_grad per batch and no backward pass at all.
"""
import torch
from torch import nn

from .._checks import check_choice
from ..store.factored import FactoredEmbeddings
from . import hooks
from .masks import ParamMask

__all__ = ["check_factored", "Factorer"]

FIX = "pass factored=False for the dense embeddings (factored='auto' falls back to them)"


def check_factored(factored):
    """factored as given: False, True or "auto" (1 and 0 are not accepted as bools)."""
    return check_choice(factored, "factored", (True, False, "auto"))


def _param(mod_name, attr):
    return f"{mod_name}.{attr}" if mod_name else attr


def head_candidates(mask, owners):
    """[(module name, module, bias masked)]: the masked nn.Linear modules that can be the
    classifier of a factored embedding (every weight entry masked, the bias all or none)."""
    found = []
    for mod_name, (module, attrs) in owners.items():
        if not isinstance(module, nn.Linear) or "weight" not in attrs:
            continue
        full = [len(mask.positions(_param(mod_name, a))) == getattr(module, a).numel()
                for a in attrs]
        if all(full):
            found.append((mod_name, module, "bias" in attrs))
    return found


def why_not_static(model, mask):
    """Why no masked module can be the classifier: about the model's last nn.Linear."""
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        return "the model has no nn.Linear classifier"
    name, module = linears[-1]
    for attr in ("weight", "bias"):
        p = getattr(module, attr)
        full = _param(name, attr)
        held = len(mask.positions(full)) if full in mask.names else 0
        if p is not None and 0 < held < p.numel():
            return (f"the mask holds {held} of the {p.numel()} entries of {full!r}; the "
                    f"classifier block is an outer product only when all of its weight (and "
                    f"all or none of its bias) is masked")
    return (f"the mask holds no whole nn.Linear weight (the model's last nn.Linear, {name!r}, "
            f"is not masked)")


class Factorer:
    """Factored embeddings of batches, over `capture` (a LayerCapture of every masked module's
    calls). The classifier is found in the first batch and must be the same in every later one.
    `reason` (set before any batch when no masked module can be the classifier, or by the first
    batch) says why the embeddings cannot come out factored; embed() then returns None."""

    def __init__(self, model, mask, owners, capture, *, weighting, backend, device, make_plans,
                 blocks):
        self.model, self.mask, self.capture = model, mask, capture
        self.weighting, self.backend, self.device = weighting, backend, device
        self.make_plans, self.blocks = make_plans, blocks
        self.candidates = head_candidates(mask, owners)
        self.reason = None if self.candidates else why_not_static(model, mask)
        # Only the classifier masked: no R, so no backward pass and no autograd graph at all.
        self.grad = len(owners) > 1
        self.head = None           # (module name, bias masked), from the first batch

    def embed(self, x):
        """FactoredEmbeddings of the batch x, or None (then `reason` says why)."""
        if self.reason is not None:
            return None
        outputs = []
        handles = [m.register_forward_hook(
            lambda mod, inp, out, name=name: outputs.append((name, out)))
            for name, m, _ in self.candidates]
        try:
            logits = self.capture.forward(x, grad=self.grad)
        finally:
            for h in handles:
                h.remove()
        head, reason = self._find_head(outputs, logits)
        if self.head is None:
            if reason is not None:
                self.reason = reason
                return None
            self._resolve(head)
        elif head != self.head:
            raise RuntimeError(f"the classifier of the first batch was {self.head[0]!r}; in a "
                               f"later one {reason or f'it is {head[0]!r}'}: the model must "
                               f"compute its logits the same way for every batch")
        name, bias_masked = self.head
        call = next(c for c in self.capture.calls if c.module_name == name)
        h = hooks.input_view(self.capture.modules[name], call).a[:, 0]   # [n, d]; checks version
        # class_seeds[c, i, k] = w_c(δ_ck − p_k): the output gradient the dense path seeds the
        # classifier with, so G_i[c, k] · h_i[m] is its weight gradient entry, bit for bit.
        G = hooks.class_seeds(logits, self.weighting).transpose(0, 1).contiguous()
        # A bias is a weight on a constant input 1: its column k is G[:, k] · 1.
        H = torch.cat([h, h.new_ones(len(h), 1)], 1) if bias_masked else h.contiguous()
        R = None
        if self.rest is not None:      # the dense path over the other parameters' calls only
            self.capture.calls = [c for c in self.capture.calls if c.module_name != name]
            R = self.blocks(self.capture, logits, self.rest, self.rest_plans, self.weighting,
                            self.backend)
        return FactoredEmbeddings(G, H, R, columns=self.columns)

    def _find_head(self, outputs, logits):
        """((module name, bias masked), None) of the classifier of this batch, or (None, why)."""
        names = [name for name, out in outputs if out is logits]
        if not names:
            listed = ", ".join(repr(n) for n, _, _ in self.candidates)
            return None, (f"the logits are not the output of the masked nn.Linear ({listed}): "
                          f"the model changes them after the layer (scales, slices or copies "
                          f"them), so their gradient is not that layer's outer product")
        name = names[0]
        calls = [c for c in self.capture.calls if c.module_name == name]
        if len(calls) != 1:
            return None, (f"the classifier {name!r} ran {len(calls)} times in one forward pass;"
                          f" its gradient is then a sum of outer products")
        # Its output is the logits [n, C], so its input is [n, d]: a sequence input [n, S, d]
        # (whose gradient sums S outer products) would have given [n, S, C].
        return (name, next(b for n, _, b in self.candidates if n == name)), None

    def _resolve(self, head):
        """The layout, once the classifier is known: the rest mask, its plans, the columns."""
        self.head = head
        name, bias_masked = head
        own = {_param(name, "weight"), _param(name, "bias")}
        rest = {n: self.mask.positions(n) for n in self.mask.names if n not in own}
        self.rest = ParamMask(self.model, rest) if rest else None
        self.rest_plans = None if self.rest is None else self.make_plans(
            self.model, self.rest, hooks.owners(self.model, self.rest.names), self.device)
        self.columns = _columns(self.mask, name, bias_masked, self.capture.modules[name])


def _columns(mask, name, bias_masked, module):
    """The dense position of each natural column (classifier block k-major, then R), or None
    when the orders agree. The dense order is the mask's: W[k, m] at weight column k·d + m,
    bias[k] at bias column k, then every other parameter's columns in model order."""
    w = mask.columns(_param(name, "weight"))
    block = torch.arange(w.start, w.stop).view(module.out_features, module.in_features)
    if bias_masked:
        b = mask.columns(_param(name, "bias"))
        block = torch.cat([block, torch.arange(b.start, b.stop)[:, None]], 1)
    rest = [torch.arange(mask.columns(n).start, mask.columns(n).stop) for n in mask.names
            if n not in (_param(name, "weight"), _param(name, "bias"))]
    cols = torch.cat([block.reshape(-1), *rest])
    return None if torch.equal(cols, torch.arange(len(cols))) else cols
