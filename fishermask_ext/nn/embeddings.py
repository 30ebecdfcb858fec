"""Step C of docs/ALGORITHM.md: per-sample masked gradient embeddings X [N, C, D]."""
import torch

from . import batches, hooks, state, stored
from . import factored as factored_nn
from .._checks import check_choice
from .._progress import progress_bar
from ..ops import resolve
from ..store.factored import FactoredEmbeddings
from ..store import EmbeddingStore

__all__ = ["masked_grad_embeddings"]


NO_SAMPLES = "masked_grad_embeddings: data holds no samples; pass a non-empty pool"

def masked_grad_embeddings(model, data, mask, *, weighting="sqrt_p", batch_size=256,
                           device=None, out=None, backend="auto", progress=None, factored=False):
    """Per-sample gradients of log p_c, for every class c, restricted to `mask`.

    Row c of sample x is w_c(x) · ∇_θ log p_c(x) at the D masked entries, w_c = sqrt(p_c)
    ("sqrt_p", the Fisher embedding of BAIT) or 1 ("none", the FisherMask reference). The model
    runs in eval mode (each submodule's mode is restored after); per batch it costs one forward
    pass and C backward passes of activation gradients down to the earliest masked layer, then
    the masked entries straight from layer inputs and output gradients (native kernels through
    `backend`: "auto", "native" or "torch"). Only the output channels the mask touches keep
    their output gradients, so memory is about the batch's autograd graph. Masked parameters
    must belong to Linear, Conv1d, Conv2d or BatchNorm1d/2d modules.

    model: returns logits [n, C] or a tuple starting with them.
    data: Tensor of inputs [N, ...], or a Dataset / DataLoader of inputs or (inputs, labels).
    mask: a ParamMask built for this model.
    out: optional preallocated [N, C, D] tensor of the model's dtype, or an EmbeddingStore
        (`open_store(path, mode="w")`, or mode="a" to resume one): filled chunk by chunk, each
        chunk on disk before the next; a store already holding chunks must have been written
        by this model, mask and weighting (else ValueError, "refuse to mix"), and only its
        missing chunks are computed. Data must have a length then.
    progress: None (a tqdm bar on a terminal once the call has run a few seconds), True or
        False (fishermask_ext/_progress.py); no bar without tqdm, which only the `al` extra installs.
    factored: False (default): a dense tensor. True: a FactoredEmbeddings whose .dense() is
        the dense result, column for column (nn/factored.py): the mask must hold a whole
        nn.Linear classifier, the layer whose output is the logits, on a 2-D input [n, d],
        run once per forward pass, with all its weight entries masked and its bias all or not
        at all; else ValueError saying why. The classifier block then needs no backward pass
        (a mask of the classifier only: one forward pass per batch). "auto": factored where
        that holds, else (or with a preallocated tensor `out`) the dense tensor. A store `out`
        then holds the factors (a resumed store must be of the same kind).
    Returns out (the store), or a new [N, C, D] tensor (or FactoredEmbeddings) in the model's
    dtype on `device`.
    """
    check_choice(weighting, "weighting", hooks.WEIGHTINGS)
    _check_out_type(out)
    factored = factored_nn.check_factored(factored)
    if isinstance(out, torch.Tensor) and factored is True:
        raise ValueError("out: a preallocated tensor holds dense [N, C, D] embeddings; with "
                         "factored=True pass out=None (FactoredEmbeddings come back) or an "
                         "EmbeddingStore")
    dtype = _model_dtype(model)
    mask.check(model)
    owners = hooks.owners(model, mask.names)
    device = state.model_device(model, device)
    plans = _plans(model, mask, owners, device)
    capture = hooks.LayerCapture(model, {name: m for name, (m, _) in owners.items()})
    fac = None
    if factored and not isinstance(out, torch.Tensor):
        fac = factored_nn.Factorer(model, mask, owners, capture, weighting=weighting,
                                   backend=backend, device=device, make_plans=_plans,
                                   blocks=masked_blocks)
        if fac.reason is not None and factored is True:
            raise ValueError(f"factored=True: {fac.reason}; {factored_nn.FIX}")
    N = batches.num_samples(data)
    if N == 0:      # else an empty batch runs, and fails in a reshape
        raise ValueError(NO_SAMPLES)
    chunks, start = [], 0
    bar = progress_bar(N, progress, "embeddings", "img")

    def embed(x):   # [n, C, D] embeddings (or their factors) of one batch
        state.check_input_dtype(x, dtype, "data")
        emb = fac.embed(x) if fac is not None else None
        if emb is None and fac is not None and factored is True:
            raise ValueError(f"factored=True: {fac.reason}; {factored_nn.FIX}")
        return emb if emb is not None else _embed_batch(capture, x, mask, plans, weighting,
                                                         backend)

    if isinstance(out, EmbeddingStore):
        fingerprints = dict(model=state.model_fingerprint(model), mask=mask.fingerprint(),
                            weighting=weighting)
        with state.eval_with_grad(model), bar:
            return stored.fill_store(
                out, data, embed,
                n=N, dim=len(mask), dtype=_embedding_dtype(model, mask), fingerprints=fingerprints,
                batch_size=batch_size, device=device, bar=bar, probe=bool(factored))
    with state.eval_with_grad(model), bar:
        for x in batches.iter_batches(data, batch_size, device):
            emb = embed(x)
            if isinstance(emb, FactoredEmbeddings) or (out is None and N is None):
                chunks.append(emb)
            else:
                if out is None:
                    out = emb.new_empty((N, *emb.shape[1:]))
                _check_out(out, emb, start, N)
                out[start:start + len(emb)] = emb
            start += len(emb)
            bar.update(len(emb))
    if start == 0:
        raise ValueError(NO_SAMPLES)       # an iterable without a length that gave nothing
    if out is not None and start != len(out):
        raise ValueError(f"data held {start} samples but out has {len(out)} rows")
    if out is not None:
        return out
    return (FactoredEmbeddings.cat(chunks) if isinstance(chunks[0], FactoredEmbeddings)
            else torch.cat(chunks))


def _plans(model, mask, owners, device):
    """{module name: (channels, {param name: index})} per masked module. channels [k]: the
    output channels its masked entries touch, the only ones whose output gradients are kept
    (None keeps all, for grouped convs, whose kernels derive the group from the channel);
    index [m]: each parameter's masked positions renumbered into the kept channels."""
    params = dict(model.named_parameters())
    plans = {}
    for mod_name, (module, attrs) in owners.items():
        names = [f"{mod_name}.{attr}" if mod_name else attr for attr in attrs]
        per_out = {n: params[n].numel() // params[n].shape[0] for n in names}  # dim 0: output
        index = {n: mask.positions(n) for n in names}
        channels = None
        if getattr(module, "groups", 1) == 1:
            channels = torch.unique(torch.cat([index[n] // per_out[n] for n in names]))
            index = {n: torch.searchsorted(channels, i // per_out[n]) * per_out[n] + i % per_out[n]
                     for n, i in index.items()}
            channels = channels.to(device)
        plans[mod_name] = (channels, {n: i.to(device) for n, i in index.items()})
    return plans


def _embed_batch(capture, x, mask, plans, weighting, backend):
    """[n, C, D] embeddings of the batch x [n, ...]."""
    return masked_blocks(capture, capture.forward(x), mask, plans, weighting, backend)


def masked_blocks(capture, logits, mask, plans, weighting, backend):
    """[n, C, D]: the masked columns of `mask` from the calls `capture` recorded while it
    computed `logits` (the factored path passes the calls of the other parameters only)."""
    n, C = logits.shape
    views = []
    for call in capture.calls:
        view = hooks.input_view(capture.modules[call.module_name], call)
        channels = plans[call.module_name][0]
        if view.kind == "bn" and channels is not None:    # x̂ of the kept channels only
            view = view._replace(a=view.a[:, channels])
        views.append(view)
    deltas = _kept_deltas(capture, logits, views, plans, weighting)     # per call [C, n, ...]
    blocks = []
    for name in mask.names:
        mod_name, _, attr = name.rpartition(".")
        index = plans[mod_name][1][name]
        block = logits.new_zeros((n, C, len(index)))           # stays 0 if the module never ran
        for call, view, delta in zip(capture.calls, views, deltas):
            if call.module_name == mod_name:   # a module called twice sums both calls
                block += _masked_grad(view, hooks.delta_view(view, delta), attr, index, backend)
        blocks.append(block)
    return torch.cat(blocks, dim=2) if blocks else logits.new_zeros((n, C, 0))


def _kept_deltas(capture, logits, views, plans, weighting):
    """Per recorded call, its output gradients [C, n, *out_shape] for all C class seeds,
    restricted to the plan's output channels (the last dim of a Linear, else dim 1)."""
    def keep(i, delta):
        channels = plans[capture.calls[i].module_name][0]
        if channels is None:
            return delta
        return delta.index_select(-1 if views[i].kind == "linear" else 1, channels)
    return hooks.stacked_deltas(capture, logits, hooks.class_seeds(logits, weighting), keep)


def _masked_grad(view, delta, attr, index, backend):
    """[n, C, m]: the per-sample gradient of parameter `attr` of one call at positions
    index [m], from its View and its output gradients `delta` (in the view's layout)."""
    if attr == "weight" and view.kind == "linear":
        return resolve("masked_linear_grad", index.device, backend)(view.a, delta, index)
    if attr == "weight" and view.kind == "conv":
        return resolve("masked_conv2d_grad", index.device, backend)(
            view.a, delta, index, *view.geometry)
    d = hooks.channel_deltas(view, delta)[:, :, index]           # [C, n, m, L]
    if attr == "weight":                                        # BatchNorm γ: Σ δ · x̂
        d = d * view.a[:, index]
    return d.sum(-1).transpose(0, 1)


def _model_dtype(model):
    """The dtype of the model's floating parameters; TypeError for half precision, which the
    kernels do not compute in (an internal argument name would be the error otherwise)."""
    dtype = state.model_dtype(model)
    if dtype in (torch.float16, torch.bfloat16):
        raise TypeError(f"the model's parameters are {dtype}: masked_grad_embeddings computes "
                        f"in float32 or float64; pass model.float() (and float32 inputs)")
    return dtype




def _check_out_type(out):
    """TypeError unless `out` is None, a tensor or a store; says how to wrap a numpy memmap."""
    if out is None or isinstance(out, (torch.Tensor, EmbeddingStore)):
        return
    kind = type(out).__module__.split(".")[0] + "." + type(out).__name__
    hint = (" (it shares the memory: rows written go to the file)"
            if hasattr(out, "__array__") else "")
    raise TypeError(f"out must be a torch tensor or an EmbeddingStore, got a {kind}; wrap an "
                    f"array with "
                    f"out=torch.from_numpy(array){hint}")


def _embedding_dtype(model, mask):
    """The dtype of the embeddings: that of the masked parameters (the logits' dtype of any
    model whose parameters share one), known before any batch runs."""
    params = dict(model.named_parameters())
    return params[mask.names[0]].dtype if mask.names else torch.get_default_dtype()


def _check_out(out, emb, start, N):
    """Raise unless `out` can hold this batch emb [n, C, D] at row `start`."""
    rows = N if N is not None else max(len(out), start + len(emb))
    if tuple(out.shape) != (rows, *emb.shape[1:]) or out.dtype != emb.dtype:
        raise ValueError(f"out must be a {emb.dtype} tensor of shape {(rows, *emb.shape[1:])} "
                         f"[N, C, D], got {out.dtype} {tuple(out.shape)}")
