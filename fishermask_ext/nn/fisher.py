"""Steps A and B of docs/ALGORITHM.md: the Fisher diagonal of every parameter, and the mask."""
import math

import torch

from .._checks import check_fraction, check_int
from ..ops import conv, resolve, sizes
from . import batches, hooks, state
from .masks import ParamMask, split_flat
from .._progress import progress_bar

__all__ = ["fisher_diagonal", "fisher_mask"]


def fisher_diagonal(model, data, *, n_samples=1024, seed=0, batch_size=256, device=None,
                    reference_order=False, backend="auto", rows=None, progress=None):
    """{name: f [*param.shape]}, f_j = Σ_x Σ_c p_c(x) (∂ log p_c(x) / ∂θ_j)², in eval mode.

    The sum runs over min(n_samples, N) samples of `data` (see masked_grad_embeddings for the
    accepted kinds): by default the indices
    `torch.randperm(N, generator=torch.Generator().manual_seed(seed))[:n_samples]`, visited in
    ascending order; with reference_order=True the first n_samples in storage order, as the
    reference code does (in a class-sorted pool that is only a few classes). Per batch: one
    forward pass and C − 1 backward passes (C for C = 1 or C > 32) of activation gradients,
    seeded with a factor of
    each sample's softmax Fisher diag(p) − ppᵀ (hooks.fisher_seeds: the same sum as the C
    seeds sqrt(p_c)(e_c − p), one pass fewer), over `rows` samples at a time (default
    ops.sizes.fisher_rows: the output gradients of all seeds of those samples fill about
    FISHER_ROWS_BYTES); the fused fisher_*_sq ops (native through `backend`: "auto", "native"
    or "torch") then sum the squared per-sample gradients straight from the layer inputs and
    output gradients of all seeds at once, a chunk of samples at a time
    (ops.sizes.fisher_chunk). Memory is bounded by rows and the chunks, whatever batch_size is
    (batch_size only sets how many samples are loaded at once). progress: None (a bar on a
    terminal once the call has run a few seconds), True or False (fishermask_ext/_progress.py).
    """
    params = dict(model.named_parameters())
    owners = hooks.owners(model, params)
    device = state.model_device(model, device)
    capture = hooks.LayerCapture(model, {name: m for name, (m, _) in owners.items()})
    if rows is not None:
        check_int(rows, "rows", minimum=1)
    sample = _sample(data, n_samples, seed, reference_order)
    with state.eval_with_grad(model), progress_bar(batches.num_samples(sample), progress,
                                                   "Fisher diagonal", "img") as bar:
        fisher = {name: torch.zeros(p.numel(), dtype=p.dtype, device=device)
                  for name, p in params.items()}
        for x in batches.iter_batches(sample, batch_size, device):
            rows = rows or _rows(capture, x)
            for part in x.split(rows):
                _accumulate(capture, owners, part, fisher, backend)
            bar.update(len(x))
    return {name: f.view(params[name].shape) for name, f in fisher.items()}


def _rows(capture, x):
    """ops.sizes.fisher_rows for this model, from the output sizes of a one-sample pass."""
    logits = capture.forward(x[:1])
    per_sample = hooks.fisher_seed_count(logits.shape[1]) * sum(torch.Size(c.shape[1:]).numel() for c in capture.calls)
    return sizes.fisher_rows(per_sample * logits.element_size())


def _sample(data, n_samples, seed, reference_order):
    """The samples of `data` the Fisher diagonal sums over (see fisher_diagonal)."""
    N = batches.num_samples(data)
    if N is None:
        raise TypeError("fisher_diagonal needs data with a length (a Tensor, a map-style "
                        "Dataset or a DataLoader over one) to draw its sample")
    if N == 0:
        raise ValueError("fisher_diagonal: data holds no samples; pass a non-empty pool")
    k = min(check_int(n_samples, "n_samples", minimum=1), N)
    if reference_order:
        return batches.take(data, torch.arange(k))
    order = torch.randperm(N, generator=torch.Generator().manual_seed(seed))
    return batches.take(data, order[:k].sort().values)


def _accumulate(capture, owners, x, fisher, backend):
    """Adds Σ_{x in batch} Σ_c p_c g_c² to `fisher` ({name: [numel]})."""
    logits = capture.forward(x)
    views = [hooks.input_view(owners[call.module_name][0], call) for call in capture.calls]
    # One "class" row per seed of hooks.fisher_seeds (C − 1 of them for 2 ≤ C ≤ 32, else C):
    # the ops sum the squares over that dim, and the seeds' squares add up to Σ_c p_c g_c².
    deltas = hooks.stacked_deltas(capture, logits, hooks.fisher_seeds(logits), sample_major=True)
    calls = {}                  # module name: indices of its calls (a module may run twice)
    for i, call in enumerate(capture.calls):
        calls.setdefault(call.module_name, []).append(i)
    for mod_name, idx in calls.items():
        vs = [views[i] for i in idx]
        ds = [hooks.delta_view(views[i], deltas[i]) for i in idx]            # [C, n, ...]
        for attr in owners[mod_name][1]:
            key = f"{mod_name}.{attr}" if mod_name else attr
            fisher[key] += _squared_grads(vs, ds, attr, backend).flatten()


def _squared_grads(views, deltas, attr, backend):
    """Σ_{n, c} g², g the per-sample gradient of parameter `attr` summed over the module's
    calls (Views, deltas in their layout), in the parameter's layout flattened past dim 0."""
    device, itemsize = views[0].a.device, views[0].a.element_size()
    kind = views[0].kind
    if attr == "weight" and kind == "linear":
        # Every call is more positions s of the one weight: join them along S.
        a, d = _joined([v.a for v in views], 1), _joined(deltas, 2)     # [n, S, I], [C,n,S,O]
        C, _, S, O = d.shape
        per_sample = (O + a.shape[2]) * S if S == 1 else C * O * a.shape[2]
        return resolve("fisher_linear_sq", device, backend)(
            a, d, sizes.fisher_chunk(per_sample, itemsize))
    if attr == "weight" and kind == "conv":
        return _conv_squares(views, deltas, backend, itemsize)
    # Channel sums (BatchNorm γ, β; biases) run over every position of every call.
    d = _joined([hooks.channel_deltas(v, dl) for v, dl in zip(views, deltas)], 3)
    a = _joined([v.a for v in views], 2) if attr == "weight" else None     # BatchNorm γ: x̂
    return resolve("fisher_channel_sq", device, backend)(d, a)


def _joined(tensors, dim):
    """torch.cat along `dim`, without the copy cat makes of a single tensor."""
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors, dim)


def _conv_squares(views, deltas, backend, itemsize):
    """_squared_grads of a conv weight [O, K]; K = Cin/groups·kh·kw."""
    geometry = views[0].geometry
    C, n, O = deltas[0].shape[:3]
    K = conv.weight_columns(views[0].a.shape[1], geometry[0], geometry[4])
    L = sum(d.shape[3] * d.shape[4] for d in deltas)
    chunk = sizes.fisher_chunk(C * O * K + geometry[4] * K * L, itemsize)
    if len(views) == 1:
        return resolve("fisher_conv2d_sq", views[0].a.device, backend)(
            views[0].a, deltas[0], *geometry, chunk)
    # Called more than once per sample: the gradient sums the calls before it is squared, so
    # the chunk's per-sample gradients are formed call by call (the twin's arithmetic).
    out = views[0].a.new_zeros((O, K))
    for s in range(0, n, chunk):
        g = sum(conv.conv2d_sample_grads(v.a[s:s + chunk], d[:, s:s + chunk], *v.geometry)
                for v, d in zip(views, deltas))
        out += g.square().sum((0, 1))
    return out


def fisher_mask(model, data, *, pct_top=0.002, n_samples=1024, seed=0, always_include=None,
                batch_size=256, device=None, reference_order=False, diagonal=None,
                progress=None):
    """Step B: the ParamMask of the n_top = int(pct_top · total parameters) entries.

    The tensors `always_include` (default: every parameter of the module that owns the last
    parameter, i.e. the classifier weight and its bias if any) are always in whole; the rest
    are the largest Fisher diagonal entries (fisher_diagonal with n_samples, seed, batch_size,
    device, reference_order, progress) over all other tensors, ties going to the lowest
    (tensor index, flat position). `diagonal`: a fisher_diagonal result to rank instead of
    computing one (fishermask_ext.distributed passes the all-reduced one; `data` is then unused).
    """
    params = dict(model.named_parameters())
    always = _always_included(params, always_include)
    total = sum(p.numel() for p in params.values())
    n_always = sum(params[name].numel() for name in always)
    pct_top = check_fraction(pct_top, "pct_top")
    n_top = int(pct_top * total)
    if n_top <= n_always:
        raise ValueError(
            f"pct_top={pct_top} gives n_top = int(pct_top * {total}) = {n_top}, which does not "
            f"exceed the {n_always} always-included entries ({', '.join(always)}); the smallest "
            f"pct_top that works is {_smallest_pct(n_always, total)!r}")
    fisher = diagonal if diagonal is not None else fisher_diagonal(
        model, data, n_samples=n_samples, seed=seed, batch_size=batch_size, device=device,
        reference_order=reference_order, progress=progress)
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
