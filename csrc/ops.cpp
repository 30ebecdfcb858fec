// The one schema file: every fishermask_ext op is declared here; csrc/cpu/*.cpp and
// csrc/cuda/*.cu register the device kernels, fishermask_ext/ops/fakes.py the fake (meta)
// kernels.
#include <Python.h>
#include <torch/library.h>

extern "C" {
// Importing fishermask_ext.ops._C runs the static TORCH_LIBRARY initialisers below; the module
// itself is empty (no pybind11: the ops are reached through torch.ops.fishermask_ext).
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(fishermask_ext, m) {
  // ---- selection (docs/ALGORITHM.md, step E) ----
  // Every product over X is float64 arithmetic; float32 X is a storage format only.
  // One greedy step for all candidates. When UV = [u v] is given, W = scale·X·u and
  // Z = scale·X·v (per candidate, C×C each) and the rank-C commit update
  //   A_i -= W_i S W_iᵀ;  B_i -= W_i S Z_iᵀ + Z_i S W_iᵀ - (W_i S) Q (W_i S)ᵀ
  // is applied in place to every candidate. Then every eligible candidate is scored,
  //   score_i = sigma · tr((I + sigma·A_i)⁻¹ B_i)   (-inf where not positive definite or NaN).
  // With round_scores, each score is rounded to float32 (kept as f64) before the argmax, as the
  // reference FisherMask code does (parity mode: its picks on the same embeddings).
  // The op returns (scores [N] f64: -inf where not eligible,
  //                     best [] int64: the first eligible index of maximal score, -1 if none).
  // A, B: [N, C, C] f64, one dense layout; X: [N, C, D] f32/f64; UV: [D, 2C] f64;
  // S, Q: [C, C] f64, symmetric (the update is evaluated in a form that assumes it);
  // eligible: [N] bool.
  m.def("trace_ratio_step(Tensor(a!) A, Tensor(b!) B, Tensor X, Tensor? UV, float scale, "
        "Tensor S, Tensor Q, Tensor eligible, float sigma, bool round_scores=False) -> "
        "(Tensor, Tensor)");
  // trace_ratio_step's update and scores with the products already taken, however they were
  // produced (a dense X, or factored_times): WZ [N, C, 2C] f64 holds X_i·[u v] unscaled
  // (W_i = scale·WZ[i, :, :C], Z_i = scale·WZ[i, :, C:]), or is [N, C, 0]: no update, scores
  // only (the first step). A, B: [N, C, C] f64 with one non-overlapping layout; the rest and
  // the result as trace_ratio_step.
  m.def("trace_ratio_update(Tensor(a!) A, Tensor(b!) B, Tensor WZ, float scale, Tensor S, "
        "Tensor Q, Tensor eligible, float sigma, bool round_scores=False) -> (Tensor, Tensor)");
  // ---- factored embeddings X_i = [G_i ⊗ h̄_iᵀ | R_i] (fishermask_ext.FactoredEmbeddings) ----
  // Natural column order: the classifier block k-major (column k·d̄ + m holds G_i[:, k]·h̄_i[m]),
  // then R's D_r columns. G: [n, C, C]; H: [n, d̄]; R: [n, C, D_r] or None, one f32/f64 dtype;
  // every product in float64 (f32 factors converted chunk by chunk), X never formed.
  // X_i·M for every candidate: G_i·(h̄_iᵀ M_k) + R_i·M_R. M: [D, k] f64. -> [n, C, k] f64
  m.def("factored_times(Tensor G, Tensor H, Tensor? R, Tensor M) -> Tensor");
  // One greedy step through the factors: W, Z = X̃·[u v] by factored_times, then
  // trace_ratio_update (UV None: scores only). On the CPU one fused pass per group of candidates
  // keeps the products in cache (csrc/cpu/factored_step_cpu.cpp). Arguments and result as
  // trace_ratio_step, with the factors in place of X.
  m.def("factored_step(Tensor(a!) A, Tensor(b!) B, Tensor G, Tensor H, Tensor? R, Tensor? UV, "
        "float scale, Tensor S, Tensor Q, Tensor eligible, float sigma, "
        "bool round_scores=False) -> (Tensor, Tensor)");
  // Σ_i X_iᵀ X_i: classifier block Σ (G_iᵀG_i) ⊗ (h̄_i h̄_iᵀ), cross block Σ h̄_i ⊗ (G_iᵀR_i),
  // then Σ R_iᵀR_i. -> [D, D] f64
  m.def("factored_gram(Tensor G, Tensor H, Tensor? R) -> Tensor");
  // trace_ratio_init through the factors: A_i = X̃_i P0 X̃_iᵀ, B_i = X̃_i P0 F P0 X̃_iᵀ,
  // X̃ = scale·X, `chunk` candidates at a time. P0, F: [D, D] f64. -> ([n, C, C] f64, same)
  m.def("factored_init(Tensor G, Tensor H, Tensor? R, Tensor P0, Tensor F, float scale, "
        "int chunk) -> (Tensor, Tensor)");
  // The commit of one pick x̃ (sign σ folded into S = (σI + A_j)⁻¹):
  //   u = P x̃ᵀ,  v = P F u,  P -= u S uᵀ (in place).  Returns [u v].
  // P, F: [D, D] f64 symmetric; xt: [C, D] f64; S: [C, C] f64 symmetric. -> [D, 2C] f64
  m.def("commit_direction(Tensor(a!) P, Tensor F, Tensor xt, Tensor S) -> Tensor");
  // The initial scores of step E on scaled embeddings X̃ = scale * X:
  //   A_i = X̃_i P0 X̃_iᵀ,  B_i = X̃_i P0 F P0 X̃_iᵀ   ([N, C, C] f64 each),
  // `chunk` candidates at a time (each chunk converted to float64), `block` columns per block of
  // the triangular products. X: [N, C, D] f32/f64; P0, F: [D, D] f64. On CUDA, A and B are
  // stored candidate-minor ([C, C, N] memory, so a warp's loads are coalesced).
  m.def("trace_ratio_init(Tensor X, Tensor P0, Tensor F, float scale, int chunk, int block) -> "
        "(Tensor, Tensor)");
  // The whole greedy loop of step E on X̃ = scale * X: trace_ratio_init, then n_forward forward
  // picks among the `candidates` rows (all rows when None), then n_forward - budget backward
  // removals; chunk, block as in trace_ratio_init; round_scores as in trace_ratio_step.
  // Returns (picks [budget] int64 in pick order,
  //          gains [budget] f64: each pick's score when it was picked, i.e. the decrease of
  //                 tr(M⁻¹F) it brought).
  m.def("greedy_select(Tensor X, Tensor P0, Tensor F, float scale, int budget, int n_forward, "
        "int chunk, int block, bool round_scores=False, Tensor? candidates=None) -> "
        "(Tensor, Tensor)");

  // ---- embeddings (docs/ALGORITHM.md, step C) ----
  // out[n, c, k] = sum_s delta[c, n, s, o_k] * a[n, s, i_k], (o_k, i_k) = divmod(index[k], I).
  // a: [n, S, I]; delta: [C, n, S, O]; index: [m] int64 into the [O, I] weight. -> [n, C, m]
  m.def("masked_linear_grad(Tensor a, Tensor delta, Tensor index) -> Tensor");
  // Per-sample masked Conv2d weight gradient, reading input patches in place (no unfold):
  // out[n, c, k] = sum_{y,x} delta[c, n, o, y, x] * x_pad[n, g*Ig + i, y*s + α*d, x*s + β*d]
  // with index[k] = ((o*Ig + i)*kh + α)*kw + β, g = o / (O / groups).
  // x: [n, Cin, H, W]; delta: [C, n, O, Ho, Wo]; index: [m] int64. -> [n, C, m]
  m.def("masked_conv2d_grad(Tensor x, Tensor delta, Tensor index, int[2] kernel_size, "
        "int[2] stride, int[2] padding, int[2] dilation, int groups) -> Tensor");

  // ---- Fisher diagonal (docs/ALGORITHM.md, step A) ----
  // Sums over samples n and class seeds c of squared per-sample gradients, formed `chunk`
  // samples at a time (memory grows with chunk, never with n). The products that form a chunk
  // run in the input's dtype (TF32 off on CUDA); the kernels sum squares in float64 on every
  // device, and each chunk's sum is added to the output in its dtype. Each output is in the
  // parameter's own layout.
  // out[o, i] = sum_{c,n} (sum_s delta[c, n, s, o] * a[n, s, i])^2.
  // a: [n, S, I]; delta: [C, n, S, O]. -> [O, I]
  m.def("fisher_linear_sq(Tensor a, Tensor delta, int chunk) -> Tensor");
  // out[o, k] = sum_{c,n} (sum_{y,x} delta[c, n, o, y, x] * x_pad[n, g*Ig + i, y*s + α*d,
  // x*s + β*d])^2 with k = (i*kh + α)*kw + β, g = o / (O / groups): the per-sample Conv2d weight
  // gradient of masked_conv2d_grad, squared and summed.
  // x: [n, Cin, H, W]; delta: [C, n, O, Ho, Wo]. -> [O, Cin/groups * kh * kw]
  m.def("fisher_conv2d_sq(Tensor x, Tensor delta, int[2] kernel_size, int[2] stride, "
        "int[2] padding, int[2] dilation, int groups, int chunk) -> Tensor");
  // out[o] = sum_{c,n} (sum_l delta[c, n, o, l] * a[n, o, l])^2, or without a
  // sum_{c,n} (sum_l delta[c, n, o, l])^2: BatchNorm gamma (a = x̂) and biases.
  // delta: [C, n, O, L]; a: [n, O, L] or None. -> [O]
  m.def("fisher_channel_sq(Tensor delta, Tensor? a) -> Tensor");

  // ---- information (`fishermask info`) ----
  // The instruction set the CPU kernels chose when the process started (csrc/cpu/isa.h):
  // "v4" (AVX-512: avx512f and avx512dq), "v3" (AVX2 with FMA) or "base" (SSE2); the
  // environment variable FISHERMASK_CPU_ISA=v3|base caps it. No tensors: no fake kernel.
  m.def("cpu_isa() -> str");
}
