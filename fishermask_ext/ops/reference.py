"""Pure-PyTorch twins of every native op: same names, same signatures, same results.

They are the fallback when the compiled extension is missing (or lacks a kernel for a device)
and the oracle of every native-op test. Shapes follow csrc/ops.cpp.
"""
import torch

from . import loop
from .conv import conv2d_sample_grads, masked_conv2d_grad, weight_columns
from .sizes import chunk_rows, factored_rows

__all__ = ["trace_ratio_step", "trace_ratio_update", "commit_direction", "trace_ratio_init",
           "greedy_select", "factored_times", "factored_step", "factored_gram", "factored_init",
           "masked_linear_grad", "masked_conv2d_grad", "fisher_linear_sq", "fisher_conv2d_sq",
           "fisher_channel_sq", "conv2d_sample_grads"]


def trace_ratio_step(A, B, X, UV, scale, S, Q, eligible, sigma, round_scores=False):
    """One greedy step for all candidates (see csrc/ops.cpp); updates A and B in place.
    With round_scores, scores are rounded to float32 (kept as float64) before the argmax.

    A, B: [N, C, C] f64 (any layout); X: [N, C, D] f32/f64; UV: [D, 2C] f64 or None;
    S, Q: [C, C] f64; eligible: [N] bool. Returns (scores [N] f64, best [] int64).
    """
    WZ = None if UV is None else _times(X, UV)                  # [N, C, 2C] f64
    return trace_ratio_update(A, B, WZ, scale, S, Q, eligible, sigma, round_scores)


def trace_ratio_update(A, B, WZ, scale, S, Q, eligible, sigma, round_scores=False):
    """trace_ratio_step with the products already taken: WZ [N, C, 2C] f64 holds X_i·[u v]
    (unscaled; [N, C, 0] or None: no update, scores only), however it was produced (dense or
    factored)."""
    C = A.shape[1]
    if WZ is not None and WZ.shape[-1] > 0:
        W, Z = WZ[..., :C] * scale, WZ[..., C:] * scale
        WS = W @ S                                   # [N, C, C]; S, Q symmetric
        A.sub_(WS @ W.mT)
        E = WS @ (Z - 0.5 * (WS @ Q)).mT             # E + Eᵀ = WS Zᵀ + Z S Wᵀ - WS Q (WS)ᵀ
        B.sub_(E + E.mT)
    eye = torch.eye(C, dtype=A.dtype, device=A.device)
    L, info = torch.linalg.cholesky_ex(eye + sigma * A)
    L = torch.where((info == 0)[:, None, None], L, eye)      # keep the solve finite
    Y = torch.linalg.solve_triangular(L, B, upper=False)      # L⁻¹ B
    Y = torch.linalg.solve_triangular(L, Y.mT, upper=False)   # L⁻¹ B L⁻ᵀ
    scores = sigma * Y.diagonal(dim1=-2, dim2=-1).sum(-1)
    # Not positive definite or NaN: never picked (the kernels' rule, csrc/trace_ratio_math.h).
    scores = scores.masked_fill((info != 0) | scores.isnan(), float("-inf"))
    if round_scores:
        scores = scores.float().double()
    scores = scores.masked_fill(~eligible, float("-inf"))
    return scores, loop.first_best(scores, eligible)


def _times(X, M):
    """X [N, C, D] (f32/f64) times M [D, k] f64 -> [N, C, k] f64, X converted chunk by chunk."""
    N, C, D = X.shape
    out = torch.empty(N, C, M.shape[1], dtype=torch.float64, device=X.device)
    rows = chunk_rows(C, D)
    for s in range(0, N, rows):
        out[s:s + rows] = X[s:s + rows].to(torch.float64) @ M
    return out


def commit_direction(P, F, xt, S):
    """u = P x̃ᵀ, v = P F u, P -= u S uᵀ in place (see csrc/ops.cpp).

    P, F: [D, D] f64; xt: [C, D] f64; S: [C, C] f64. Returns [u v]: [D, 2C] f64.
    """
    u = P @ xt.T
    v = P @ (F @ u)
    P.sub_(u @ S @ u.T)
    return torch.cat([u, v], 1)


def greedy_select(X, P0, F, scale, budget, n_forward, chunk, block, round_scores=False,
                  candidates=None):
    """Step E of docs/ALGORITHM.md with the incremental A/B update, on X̃ = scale · X: the loop
    of ops/loop.py over these twins, with X as one block.

    X: [N, C, D] f32/f64; P0, F: [D, D] f64; candidates: [N] bool or None (all rows).
    Returns (picks [budget] int64 in pick order, gains [budget] f64).
    """
    blocks = [loop.Block(lambda: X, 0, X.shape[0], candidates)]
    kernels = loop.Kernels(
        init=lambda X, P0, F, scale: trace_ratio_init(X, P0, F, scale, chunk, block),
        step=trace_ratio_step, row=lambda X, j: X[j].to(torch.float64), commit=commit_direction)
    return loop.greedy_loop(blocks, P0, F, scale, budget, n_forward, round_scores,
                            kernels=kernels)


def trace_ratio_init(X, P0, F, scale, chunk, block):
    """A_i = X̃_i P0 X̃_iᵀ and B_i = X̃_i P0 F P0 X̃_iᵀ, [N, C, C] f64 each, chunk by chunk,
    every chunk converted to float64 first. A P0 that is a multiple of I (no labeled points)
    skips the X̃ P0 product. (`block` sizes the native kernel's triangular products.)
    """
    N, C, _ = X.shape
    A = torch.empty(N, C, C, dtype=torch.float64, device=X.device)
    B = torch.empty_like(A)
    p = _scalar_identity(P0)
    for s in range(0, N, chunk):
        Xc = X[s:s + chunk].to(torch.float64) * scale
        Yc = Xc * p if p is not None else Xc @ P0          # Y = X̃ P0
        A[s:s + chunk] = Yc @ Xc.mT
        B[s:s + chunk] = (Yc @ F) @ Yc.mT
    return A, B


def _scalar_identity(P0):
    """c when P0 == c·I exactly, else None."""
    if P0.numel() == 0:
        return None
    c = float(P0[0, 0])
    eye = torch.eye(P0.shape[0], dtype=P0.dtype, device=P0.device)
    return c if bool(torch.equal(P0, eye * c)) else None


def masked_linear_grad(a, delta, index):
    """a: [n, S, I]; delta: [C, n, S, O]; index: [m] into the [O, I] weight -> [n, C, m]."""
    I = a.shape[-1]
    return torch.einsum("cnsm,nsm->ncm", delta[..., index // I], a[..., index % I])


def fisher_linear_sq(a, delta, chunk):
    """a: [n, S, I]; delta: [C, n, S, O] -> [O, I]: Σ_{c,n} (Σ_s δ[c,n,s,o] a[n,s,i])²,
    `chunk` samples' gradients at a time."""
    out = a.new_zeros((delta.shape[3], a.shape[2]))
    for s in range(0, a.shape[0], chunk):
        g = torch.einsum("cnso,nsi->cnoi", delta[:, s:s + chunk], a[s:s + chunk])
        out += g.square().sum((0, 1))
    return out


def fisher_conv2d_sq(x, delta, kernel_size, stride, padding, dilation, groups, chunk):
    """x: [n, Cin, H, W]; delta: [C, n, O, Ho, Wo] -> [O, Cin/groups·kh·kw]: the per-sample
    Conv2d weight gradients (as masked_conv2d_grad) squared and summed over samples and classes,
    `chunk` samples at a time."""
    out = x.new_zeros((delta.shape[2], weight_columns(x.shape[1], kernel_size, groups)))
    for s in range(0, x.shape[0], chunk):
        g = conv2d_sample_grads(x[s:s + chunk], delta[:, s:s + chunk], kernel_size, stride,
                                padding, dilation, groups)
        out += g.square().sum((0, 1))
    return out


def fisher_channel_sq(delta, a):
    """delta: [C, n, O, L]; a: [n, O, L] or None -> [O]: Σ_{c,n} (Σ_l δ·a)², or (Σ_l δ)²."""
    g = (delta * a).sum(-1) if a is not None else delta.sum(-1)             # [C, n, O]
    return g.square().sum((0, 1))


# ---- factored embeddings X_i = [G_i ⊗ h̄_iᵀ | R_i] (fishermask_ext.FactoredEmbeddings) ----
# Columns in natural order: the classifier block k-major (column k·d̄ + m is G_i[:, k]·h̄_i[m]),
# then R's D_r columns. G: [n, C, C]; H: [n, d̄]; R: [n, C, D_r] or None; all f32/f64, every
# product in float64.

def factored_times(G, H, R, M):
    """X_i M for every candidate, [n, C, k] f64, M [D, k] f64, without forming X:
    X_i M = G_i·U_i + R_i·M_R with U_i[k', j] = Σ_m h̄_i[m] M[k'·d̄ + m, j]."""
    n, C, _ = G.shape
    d = H.shape[1]
    U = H.to(torch.float64) @ _classifier_rows(M, C, d)
    out = G.to(torch.float64) @ U.view(n, C, M.shape[1])
    if R is not None:
        out += R.to(torch.float64) @ M[C * d:]
    return out


def _classifier_rows(M, C, d):
    """The classifier rows of M [C·d̄ + D_r, k] as [d̄, C·k]: out[m, k'·k + j] = M[k'·d̄ + m, j]."""
    k = M.shape[1]
    return M[:C * d].reshape(C, d, k).transpose(0, 1).reshape(d, C * k)


def factored_step(A, B, G, H, R, UV, scale, S, Q, eligible, sigma, round_scores=False):
    """trace_ratio_step through the factors (see csrc/ops.cpp): W, Z by factored_times, then
    trace_ratio_update, a chunk of candidates at a time (the [n, C, 2C] products and the
    float64 factors stay chunk-sized)."""
    n, C = G.shape[0], G.shape[1]
    chunk = factored_rows(C, H.shape[1], 0 if R is None else R.shape[2])
    scores = torch.empty(n, dtype=torch.float64, device=A.device)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        WZ = (A.new_empty((e - s, C, 0)) if UV is None
              else factored_times(G[s:e], H[s:e], None if R is None else R[s:e], UV))
        scores[s:e] = trace_ratio_update(A[s:e], B[s:e], WZ, scale, S, Q, eligible[s:e], sigma,
                                         round_scores)[0]
    return scores, loop.first_best(scores, eligible)


def factored_gram(G, H, R):
    """Σ_i X_iᵀ X_i, [D, D] f64, through the factors: the classifier block is
    Σ_i (G_iᵀG_i) ⊗ (h̄_i h̄_iᵀ), the cross block Σ_i h̄_i ⊗ (G_iᵀR_i), then Σ_i R_iᵀR_i."""
    n, C, _ = G.shape
    d = H.shape[1]
    G64, H64 = G.to(torch.float64), H.to(torch.float64)
    V = G64.mT @ G64                                                       # [n, C, C]
    # Block row k: H64ᵀ·[V[:, k, k'] h̄] for every k' (an [n, C, d̄] temporary, not [n, C, C, d̄]).
    hh = torch.cat([H64.T @ (V[:, k, :, None] * H64[:, None, :]).reshape(n, C * d)
                    for k in range(C)])
    if R is None:
        return hh
    R64 = R.to(torch.float64)
    hr = torch.einsum("nm,nar->amr", H64, G64.mT @ R64).reshape(C * d, R.shape[2])
    R2 = R64.reshape(-1, R64.shape[2])
    return torch.cat([torch.cat([hh, hr], 1), torch.cat([hr.T, R2.T @ R2], 1)], 0)


def factored_sandwich(G, H, R, M):
    """X_i M X_iᵀ for a symmetric M [D, D] f64, [n, C, C] f64, through the factors:
    G_i T_i G_iᵀ + G_i Y_i R_iᵀ + R_i Y_iᵀ G_iᵀ + R_i M_RR R_iᵀ, with T_i[k, k'] =
    h̄_iᵀ M_kk' h̄_i over the d̄×d̄ blocks of the classifier block and Y_i = h̄_iᵀ M_hR."""
    n, C, _ = G.shape
    d = H.shape[1]
    G64, H64 = G.to(torch.float64), H.to(torch.float64)
    Mhh = M[:C * d, :C * d].reshape(C, d, C, d).permute(1, 0, 2, 3).reshape(d, -1)
    E = (H64 @ Mhh).view(n, C, C, d)                                       # [n, k, k', m']
    T = (E * H64[:, None, None, :]).sum(-1)
    out = G64 @ T @ G64.mT
    if R is not None:
        R64 = R.to(torch.float64)
        Y = H64 @ _classifier_rows(M[:, C * d:], C, d)
        cross = G64 @ Y.view(n, C, R.shape[2]) @ R64.mT
        out += cross + cross.mT + R64 @ M[C * d:, C * d:] @ R64.mT
    return out


def factored_init(G, H, R, P0, F, scale, chunk):
    """trace_ratio_init through the factors: A_i = X̃_i P0 X̃_iᵀ, B_i = X̃_i P0 F P0 X̃_iᵀ
    (X̃ = scale·X), [n, C, C] f64 each, `chunk` candidates at a time."""
    n, C, _ = G.shape
    A = torch.empty(n, C, C, dtype=torch.float64, device=G.device)
    B = torch.empty_like(A)
    Q = P0 @ F @ P0
    Q = (Q + Q.T) / 2
    s2 = scale * scale
    for s in range(0, n, chunk):
        part = (G[s:s + chunk], H[s:s + chunk], None if R is None else R[s:s + chunk])
        A[s:s + chunk] = factored_sandwich(*part, P0) * s2
        B[s:s + chunk] = factored_sandwich(*part, Q) * s2
    return A, B
