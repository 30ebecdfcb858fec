"""What the tests and the benchmarks share (written once, imported by both): devices, dtypes,
derived tolerances, and the slow oracles that compute the same numbers the obvious way:
per-sample gradients (step C) and the direct greedy selection (step E).

Test support only; nothing in the package imports it. It ships in the package, so it imports
nothing beyond torch: no pytest (the skip helpers live in tests/testing.py).
"""
import math
import os

import torch
from torch.func import functional_call, jacrev, vmap

from .nn import hooks
from .nn.state import eval_with_grad, logits_of

__all__ = ["DEVICES", "DTYPES", "tol", "greedy_terms", "gains_tol", "network_terms",
           "max_error", "derived_tolerance",
           "subprocess_env", "loop_embeddings", "func_embeddings",
           "batch_graph_embeddings", "direct_select", "loop_fisher_diagonal",
           "batch_fisher_diagonal"]

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
DTYPES = [torch.float32, torch.float64]

def tol(dtype, *, terms=1, magnitude=1.0, condition=1.0):
    """torch.testing.assert_close's rtol and atol for a result of `dtype` arithmetic whose
    entries each accumulate `terms` rounded operations, compared with the same computation in
    another order or with a float64 oracle: assert_close(got, want, **tol(dtype, terms=K)).

    The rule (Higham, Accuracy and Stability of Numerical Algorithms, ch. 3): a sum or dot
    product of K terms in precision u = eps/2 errs by at most γ_K·Σ|terms| ≈ K·u·Σ|terms|, in
    any order. Linear in K, not √K: √K·u is the *probable* error of random rounding, which one
    seed in many may exceed (a flaky test); K·u holds for every input and every order. Two sides
    each within K·u, plus one rounding of the result: (K + 1)·eps. `magnitude` bounds Σ|terms|
    (the entries' scale before cancellation; 1 for the unit-scale data of most tests): a sum
    that cancels ends far below its terms, so its bound is absolute, atol = rtol·magnitude.
    A tensor or array as `magnitude` stands for its largest finite |entry| (the values' scale).
    `condition` is κ where a solve or an inverse amplifies the rounding of its inputs (forward
    error ≤ κ·backward error). A float32 bug is ~1e-7 relative: float64 bounds stay far below.
    """
    if not isinstance(magnitude, (int, float)):
        finite = torch.as_tensor(magnitude)
        finite = finite[torch.isfinite(finite)]
        magnitude = finite.abs().max().item() if finite.numel() else 0.0
    rtol = (terms + 1) * torch.finfo(dtype).eps * condition
    return dict(rtol=rtol, atol=rtol * magnitude)


def greedy_terms(D, C, steps=1):
    """`terms` of tol for a score or gain after `steps` greedy steps on [C, D] rows: per step
    the D-term products of a row with P and F (2D), then the C×C update, Cholesky, two triangular
    solves and the trace (a chain of about 7C); P carries each step's rounding into the next, so
    the chains add up over the steps."""
    return steps * (2 * D + 7 * C)


def gains_tol(gains, twin_gains, *, D, C, steps):
    """tol for the gains [K] of `steps` greedy steps on [C, D] rows, given twin_gains, the same
    selection in another exact float64 order (the twin). Gains are differences of traces as
    large as the first gain: magnitude, not relative. The solves amplify rounding by up to κ(M)
    forward and κ(M)² with backward steps (a downdate solves with I - A_j, whose smallest
    eigenvalue may be 1/κ); once K·C > D at small λ the updates cancel (docs/ALGORITHM.md) and
    κ(M)² makes an a-priori bound vacuous. So the condition is measured: the twin's spread in
    units of the unamplified bound, times 8 (one pair estimates it within about 2x in trials),
    at least 1."""
    terms = greedy_terms(D, C, steps)
    unit = tol(torch.float64, terms=terms, magnitude=gains)["atol"]
    spread = float((twin_gains - gains).abs().max()) if len(gains) else 0.0
    bound = tol(torch.float64, terms=terms, magnitude=gains,
                condition=max(1.0, 8 * spread / unit) if unit else 1.0)
    assert bound["rtol"] < 1e-5, bound             # a bound that still tests something
    return bound


def network_terms(model, x, fisher=False, product=False):
    """`terms` of tol for one entry of a per-sample gradient of `model` at a sample of x: the
    longest chain of rounded accumulations through a forward and a backward pass. A layer whose
    weight has fan-in k (in/groups·kernel) and fan-out o (out/groups·kernel) sums k terms forward
    and o backward, its weight gradient sums over its L output positions, a normalisation sums
    over its features, the softmax over the C classes; a layer called twice counts twice. The
    errors add along the chain (condition 1: the tests' networks are shallow and well scaled).
    With fisher, for the Fisher diagonal over all of x instead: the square of such a gradient
    (twice its relative error), summed over the n samples and C classes. With product, only the
    last step, the sum over a layer's positions: all that two computations sharing the forward
    and backward passes (step C's backends) differ in."""
    chain, positions = [], [1]

    def count(module, inputs, out):
        w = getattr(module, "weight", None)
        if not isinstance(w, torch.Tensor) or not torch.is_tensor(out):
            return
        if w.dim() >= 2:
            kernel = w[0, 0].numel()
            chain.append(w[0].numel() + w.shape[0] * kernel // getattr(module, "groups", 1))
            positions.append(out[0].numel() // w.shape[0])
        else:
            chain.append(w.numel())

    handles = [m.register_forward_hook(count) for m in model.modules()]
    training = model.training
    try:
        with torch.no_grad():
            C = logits_of(model.eval()(x[:1])).shape[-1]
    finally:
        model.train(training)
        for h in handles:
            h.remove()
    if product:
        return max(positions)
    terms = sum(chain) + max(positions) + C
    return 2 * terms + len(x) * C if fisher else terms


def subprocess_env():
    """os.environ with this fishermask_ext's folder first on PYTHONPATH: a child Python then
    imports the copy under test, not whichever one is installed."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return dict(os.environ, PYTHONPATH=os.pathsep.join(
        [root, *filter(None, [os.environ.get("PYTHONPATH")])]))


def max_error(got, truth):
    """Largest absolute difference of two tensors of one shape, in float64 (0 when empty)."""
    if got.numel() == 0:
        return 0.0
    return (got.double() - truth.double()).abs().max().item()


def derived_tolerance(baseline, truth, factor=2.0):
    """For a claim tol cannot state, "as accurate as the plain path": how far from `truth`
    (float64) a low-precision result of a whole network may be, `factor` times the error of
    `baseline`, the plain-PyTorch computation in the same precision (flash-attention's rule).
    tol's worst case over a deep network's chain (network_terms) holds too, but is orders of
    magnitude above the error either path makes, so it could not tell a less accurate path."""
    return factor * max_error(baseline, truth)


def _weights(logp, weighting):
    """Row weights [C] of one sample: sqrt(p_c) ("sqrt_p") or 1 ("none")."""
    return logp.detach().exp().sqrt() if weighting == "sqrt_p" else torch.ones_like(logp)


def loop_embeddings(model, x, mask, weighting="none"):
    """[n, C, D]: one single-sample forward pass and C autograd calls per sample, then the mask
    gather. Micro-batches of one cannot mix samples, so this is the ground truth (opacus)."""
    params = dict(model.named_parameters())
    rows = []
    for xi in x:
        logp = torch.log_softmax(logits_of(model(xi[None])), -1)[0]   # [C]
        w = _weights(logp, weighting)
        grads = [torch.autograd.grad(logp[c], list(params.values()), retain_graph=True)
                 for c in range(len(logp))]
        rows.append(torch.stack([w[c] * mask.gather(dict(zip(params, g)))
                                 for c, g in enumerate(grads)]))
    return torch.stack(rows)


def func_embeddings(model, x, mask, weighting="none"):
    """[n, C, D]: torch.func per-sample Jacobians, vmap(jacrev) of log_softmax over the batch,
    then the mask gather. Independent of the loop: a different autograd path."""
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = dict(model.named_buffers())

    def log_probs(p, xi):  # xi: one sample -> [C]
        out = functional_call(model, (p, buffers), (xi[None],))
        return torch.log_softmax(logits_of(out), -1)[0]

    emb = mask.gather(vmap(jacrev(log_probs), in_dims=(None, 0))(params, x))   # [n, C, D]
    if weighting == "sqrt_p":
        with torch.no_grad():
            emb = emb * torch.softmax(logits_of(model(x)), -1).sqrt()[..., None]
    return emb


def batch_graph_embeddings(model, x, mask, images=None):
    """[images, C, D] (weighting "none"): one torch.autograd.grad per image and class through
    the graph of the whole batch, as the FisherMask and BAIT reference code computes them;
    `images` (default all) limits it to the first ones, since each costs C full backward passes."""
    params = dict(model.named_parameters())
    logp = torch.log_softmax(logits_of(model(x)), -1)                  # [n, C], one graph
    rows = []
    for i in range(len(x) if images is None else images):
        grads = [torch.autograd.grad(logp[i, c], list(params.values()), retain_graph=True)
                 for c in range(logp.shape[1])]
        rows.append(torch.stack([mask.gather(dict(zip(params, g))) for g in grads]))
    return torch.stack(rows)


def loop_fisher_diagonal(model, x):
    """{name: f [*param.shape]}: step A's definition f_j = Σ_x Σ_c p_c (∂ log p_c/∂θ_j)² written
    out, one single-sample forward pass and C autograd calls per sample, in eval mode."""
    params = dict(model.named_parameters())
    fisher = {name: torch.zeros_like(p) for name, p in params.items()}
    with eval_with_grad(model):
        for xi in x:
            logp = torch.log_softmax(logits_of(model(xi[None])), -1)[0]   # [C]
            for c in range(len(logp)):
                grads = torch.autograd.grad(logp[c], list(params.values()), retain_graph=True)
                for name, g in zip(params, grads):
                    fisher[name] += logp[c].detach().exp() * g.square()
    return fisher


def batch_fisher_diagonal(model, x):
    """{name: f [*param.shape]}: step A as the package computed it before the fisher_*_sq ops
    (the benchmark's baseline): per class, the per-sample gradients of every parameter for the
    whole batch x, from unfolded conv inputs of the whole batch, squared and summed."""
    params = dict(model.named_parameters())
    owners = hooks.owners(model, params)
    capture = hooks.LayerCapture(model, {name: m for name, (m, _) in owners.items()})
    fisher = {name: torch.zeros(p.numel(), dtype=p.dtype) for name, p in params.items()}
    with eval_with_grad(model):
        logits = capture.forward(x)
        views = [hooks.input_view(owners[call.module_name][0], call) for call in capture.calls]
        patches = [_patches(v) if v.kind == "conv" else None for v in views]
        for deltas in capture.deltas(logits, hooks.class_seeds(logits, "sqrt_p")):
            grads = {}          # per-sample gradients [n, numel], summed over repeated calls
            for call, view, unf, delta in zip(capture.calls, views, patches, deltas):
                delta = hooks.delta_view(view, delta[None])[0]
                for attr in owners[call.module_name][1]:
                    key = f"{call.module_name}.{attr}" if call.module_name else attr
                    g = _sample_grad(view, unf, delta, attr)
                    grads[key] = grads[key] + g if key in grads else g
            for key, g in grads.items():
                fisher[key] += g.square().sum(0)
    return {name: f.view(params[name].shape) for name, f in fisher.items()}


def _patches(view):
    """Unfolded input [n, G, Ig·kh·kw, L] of a conv View, grouped like its weight."""
    kernel, stride, padding, dilation, groups = view.geometry
    unf = torch.nn.functional.unfold(view.a, kernel, dilation=dilation, padding=padding,
                                     stride=stride)                     # [n, Cin·kh·kw, L]
    return unf.unflatten(1, (groups, -1))


def _sample_grad(view, unf, delta, attr):
    """[n, numel]: per-sample gradient of parameter `attr` of one call for one class, from
    delta [n, ...] in the view's layout; unf: _patches(view) for a conv."""
    if attr == "weight" and view.kind == "linear":
        return torch.einsum("nso,nsi->noi", delta, view.a).flatten(1)
    if attr == "weight" and view.kind == "conv":
        d = delta.flatten(2).unflatten(1, (unf.shape[1], -1))           # [n, G, O/G, L]
        return torch.einsum("ngol,ngkl->ngok", d, unf).flatten(1)
    d = hooks.channel_deltas(view, delta[None])[0]                        # [n, O, L]
    return (d * view.a).sum(-1) if attr == "weight" else d.sum(-1)    # BatchNorm γ; biases


def direct_select(X, K, labeled=None, lamb=1.0, backward_steps=0, return_gaps=False, F=None,
                  round_scores=False, dtype=torch.float64):
    """Step E of docs/ALGORITHM.md written out: A_i, B_i recomputed from scratch at every step,
    as the reference code does, in arithmetic `dtype` (float64 by default: the oracle of the
    tests; the benchmarks also time it in float32, the reference's own arithmetic).

    X: [N, C, D] unlabeled embeddings; labeled: [n_L, C, D] or None; F: [D, D] pool Fisher
    (default: the mean of X_iᵀX_i over unlabeled and labeled points). With round_scores, scores
    are rounded to float32 before each argmax (parity mode); ties go to the lowest index.
    Returns the K picks in pick order (a list), and with return_gaps also the relative gap
    between the two best scores at each forward step (how near a tie each pick was).
    """
    X = X.to(dtype)
    N, C, D = X.shape
    n_L = 0 if labeled is None else labeled.shape[0]
    flat = lambda E: E.reshape(-1, D)
    labeled = None if labeled is None else labeled.to(dtype)
    F_L = flat(labeled).T @ flat(labeled) / n_L if n_L else torch.zeros(D, D, dtype=dtype)
    allX = X if labeled is None else torch.cat([X, labeled])
    F = flat(allX).T @ flat(allX) / allX.shape[0] if F is None else F.to(dtype)
    # BAIT's normalisation: M is the mean over the final labeled set of n_L + K points.
    M = lamb * torch.eye(D, dtype=dtype) + n_L / (n_L + K) * F_L
    Xt = X * math.sqrt(K / (n_L + K))
    eye = torch.eye(C, dtype=dtype)
    picked, gaps = [], []

    def scores(sigma, cand):
        P = torch.linalg.inv(M)
        Xc = Xt[cand]
        A = Xc @ P @ Xc.mT
        B = Xc @ P @ F @ P @ Xc.mT
        s = torch.linalg.solve(sigma * eye + A, B).diagonal(dim1=-2, dim2=-1).sum(-1)
        return s.float().double() if round_scores else s

    for _ in range(min((backward_steps + 1) * K, N)):
        taken = set(picked)
        cand = [i for i in range(N) if i not in taken]
        s = scores(1.0, cand)
        top = torch.topk(s, min(2, len(cand))).values
        gaps.append(float((top[0] - top[-1]) / top[0].abs()) if len(cand) > 1 else math.inf)
        j = cand[int(s.argmax())]
        picked.append(j)
        M = M + Xt[j].T @ Xt[j]
    while len(picked) > K:           # backward pruning: drop the least useful pick
        j = picked[int(scores(-1.0, picked).argmax())]
        picked.remove(j)
        M = M - Xt[j].T @ Xt[j]
    return (picked, gaps) if return_gaps else picked
