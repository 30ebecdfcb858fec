"""Steps A and B of docs/ALGORITHM.md: the Fisher diagonal of every parameter, and the mask."""
import math

import torch

from .._checks import check_int
from . import batches, hooks, state
from .masks import ParamMask, split_flat

__all__ = ["fisher_diagonal", "fisher_mask"]


def fisher_diagonal(model, data, *, n_samples=1024, seed=0, batch_size=256, device=None,
                    reference_order=False):
    """{name: f [*param.shape]}, f_j = Σ_x Σ_c p_c(x) (∂ log p_c(x) / ∂θ_j)², in eval mode.

    The sum runs over min(n_samples, N) samples of `data` (see masked_grad_embeddings for the
    accepted kinds): by default the indices
    `torch.randperm(N, generator=torch.Generator().manual_seed(seed))[:n_samples]`, visited in
    ascending order; with reference_order=True the first n_samples in storage order, as the
    reference code does (in a class-sorted pool that is only a few classes). Per batch: one
    forward pass and C backward passes of activation gradients; the per-sample squared
    gradients are assembled from layer inputs and output gradients, one class at a time.
    """
    params = dict(model.named_parameters())
    owners = hooks.owners(model, params)
    device = state.model_device(model, device)
    capture = hooks.LayerCapture(model, {name: m for name, (m, _) in owners.items()})
    with state.eval_with_grad(model):
        fisher = {name: torch.zeros(p.numel(), dtype=p.dtype, device=device)
                  for name, p in params.items()}
        for x in batches.iter_batches(_sample(data, n_samples, seed, reference_order), batch_size,
                                  device):
            _accumulate(capture, owners, x, fisher)
    return {name: f.view(params[name].shape) for name, f in fisher.items()}


def _sample(data, n_samples, seed, reference_order):
    """The samples of `data` the Fisher diagonal sums over (see fisher_diagonal)."""
    N = batches.num_samples(data)
    if N is None:
        raise TypeError("fisher_diagonal needs data with a length (a Tensor, a map-style "
                        "Dataset or a DataLoader over one) to draw its sample")
    k = min(check_int(n_samples, "n_samples", minimum=1), N)
    if reference_order:
        return batches.take(data, torch.arange(k))
    order = torch.randperm(N, generator=torch.Generator().manual_seed(seed))
    return batches.take(data, order[:k].sort().values)


def _accumulate(capture, owners, x, fisher):
    """Adds Σ_{x in batch} Σ_c p_c g_c² to `fisher` ({name: [numel]})."""
    logits = capture.forward(x)
    views = [hooks.input_view(owners[call.module_name][0], call) for call in capture.calls]
    patches = [_patches(v) if v.kind == "conv" else None for v in views]  # class-independent
    for deltas in capture.deltas(logits, hooks.class_seeds(logits, "sqrt_p")):
        grads = {}              # per-sample gradients [n, numel], summed over repeated calls
        for call, view, unf, delta in zip(capture.calls, views, patches, deltas):
            delta = hooks.delta_view(view, delta[None])
            for attr in owners[call.module_name][1]:
                key = f"{call.module_name}.{attr}" if call.module_name else attr
                g = _per_sample_grad(view, unf, delta, attr)
                grads[key] = grads[key] + g if key in grads else g
        for key, g in grads.items():
            fisher[key] += g.square().sum(0)


def _patches(view):
    """Unfolded input [n, G, Ig·kh·kw, L] of a conv View, grouped like its weight."""
    kernel, stride, padding, dilation, groups = view.geometry
    unf = torch.nn.functional.unfold(view.a, kernel, dilation=dilation, padding=padding,
                                     stride=stride)                     # [n, Cin·kh·kw, L]
    return unf.unflatten(1, (groups, -1))


def _per_sample_grad(view, unf, delta, attr):
    """[n, numel]: per-sample gradient of parameter `attr` of one call, for the single class
    of delta [1, n, ...] (in the view's layout); unf: _patches(view) for a conv."""
    if attr == "weight" and view.kind == "linear":
        return torch.einsum("nso,nsi->noi", delta[0], view.a).flatten(1)
    if attr == "weight" and view.kind == "conv":
        d = delta[0].flatten(2).unflatten(1, (unf.shape[1], -1))        # [n, G, O/G, L]
        return torch.einsum("ngol,ngkl->ngok", d, unf).flatten(1)
    d = hooks.channel_deltas(view, delta)[0]                              # [n, O, L]
    return (d * view.a).sum(-1) if attr == "weight" else d.sum(-1)    # BatchNorm γ; biases


def fisher_mask(model, data, *, pct_top=0.002, n_samples=1024, seed=0, always_include=None,
                batch_size=256, device=None, reference_order=False, diagonal=None):
    """Step B: the ParamMask of the n_top = int(pct_top · total parameters) entries.

    The tensors `always_include` (default: every parameter of the module that owns the last
    parameter, i.e. the classifier weight and its bias if any) are always in whole; the rest
    are the largest Fisher diagonal entries (fisher_diagonal with n_samples, seed, batch_size,
    device, reference_order) over all other tensors, ties going to the lowest
    (tensor index, flat position). `diagonal`: a fisher_diagonal result to rank instead of
    computing one (fishermask_ext.distributed passes the all-reduced one; `data` is then unused).
    """
    params = dict(model.named_parameters())
    always = _always_included(params, always_include)
    total = sum(p.numel() for p in params.values())
    n_always = sum(params[name].numel() for name in always)
    if not 0 < pct_top <= 1:
        raise ValueError(f"pct_top must be in (0, 1], got {pct_top}")
    n_top = int(pct_top * total)
    if n_top <= n_always:
        raise ValueError(
            f"pct_top={pct_top} gives n_top = int(pct_top * {total}) = {n_top}, which does not "
            f"exceed the {n_always} always-included entries ({', '.join(always)}); the smallest "
            f"pct_top that works is {_smallest_pct(n_always, total)!r}")
    fisher = diagonal if diagonal is not None else fisher_diagonal(
        model, data, n_samples=n_samples, seed=seed, batch_size=batch_size, device=device,
        reference_order=reference_order)
    others = [name for name in params if name not in always]
    scores = torch.cat([fisher[name].flatten().cpu() for name in others])
    top = torch.sort(scores, descending=True, stable=True).indices[:n_top - n_always]
    positions = split_flat(model, top, others)
    positions.update({name: torch.arange(params[name].numel()) for name in always})
    return ParamMask(model, positions)


def _always_included(params, always_include):
    """Names of the always-included tensors, in parameter order."""
    if always_include is None:
        last = next(reversed(params)).rpartition(".")[0]
        return [name for name in params if name.rpartition(".")[0] == last]
    names = [always_include] if isinstance(always_include, str) else list(always_include)
    for name in names:
        if name not in params:
            raise KeyError(f"always_include: {name!r} is not a parameter of the model")
    return [name for name in params if name in names]


def _smallest_pct(n_always, total):
    """The smallest float pct with int(pct * total) > n_always."""
    pct = (n_always + 1) / total
    while int(pct * total) <= n_always:
        pct = math.nextafter(pct, 2.0)
    while int(math.nextafter(pct, 0.0) * total) > n_always:
        pct = math.nextafter(pct, 0.0)
    return pct
