// The greedy Fisher trace-ratio loop (docs/ALGORITHM.md, step E and "The fast update") and its
// initialisation, written once over ATen and the trace_ratio_step / commit_direction ops, so
// they run on every device that has a trace_ratio_step kernel. Registered once, as
// CompositeExplicitAutograd. fishermask_ext/ops/loop.py is the same loop in Python over the
// same ops, for pools that come in blocks (stores, shards on several ranks, progress bars).
// The chosen index stays a device tensor throughout, so a CUDA run never waits on the host
// inside the loop; only the final compaction of the pick order reads back.
// Every product over X runs in float64 (float32 X is converted chunk by chunk): once K·C > D the
// incremental updates cancel, and float32 arithmetic would lose the argmax.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include "checks.h"

namespace fishermask_ext {
namespace {

using StepFn = std::tuple<at::Tensor, at::Tensor>(at::Tensor&, at::Tensor&, const at::Tensor&,
                                                  const c10::optional<at::Tensor>&, double,
                                                  const at::Tensor&, const at::Tensor&,
                                                  const at::Tensor&, double, bool);
using CommitFn = at::Tensor(at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&);

template <typename Fn>
c10::TypedOperatorHandle<Fn> op_handle(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Fn>();
}

bool is_scalar_identity(const at::Tensor& P0) {
  if (P0.numel() == 0) return false;
  return at::equal(P0, at::eye(P0.size(0), P0.options()) * P0[0][0]);
}

// H with G = H + Hᵀ for a symmetric G: tril(G) with its diagonal halved.
at::Tensor half_tril(const at::Tensor& G) {
  auto H = G.tril();
  H.diagonal().mul_(0.5);
  return H;
}

// Per candidate, R_i = X_i G X_iᵀ for a symmetric G = H + Hᵀ (H from half_tril), in about 5/8
// of the multiply-adds of the plain product: X_i G X_iᵀ = M_i + M_iᵀ with M_i = (X_i H) X_iᵀ,
// and X·H skips H's zero upper blocks. Column block by column block (`block` wide), T = X·H
// goes into the reusable buffer `buf` and M accumulates T_i X_i[:, j:e]ᵀ.
// Xc: [n, C, D] f64. Returns [n, C, C] f64.
at::Tensor sandwich(const at::Tensor& Xc, const at::Tensor& H, int64_t block, at::Tensor& buf) {
  const int64_t n = Xc.size(0), C = Xc.size(1), D = Xc.size(2);
  const auto X2 = Xc.reshape({-1, D});                                  // [n·C, D]
  if (buf.numel() < n * C * block) buf = at::empty({n * C * block}, Xc.options());
  auto M = at::zeros({n, C, C}, Xc.options());
  for (int64_t j = 0; j < D; j += block) {
    const int64_t w = std::min(D, j + block) - j;
    auto T = buf.narrow(0, 0, n * C * w).view({n * C, w});
    at::mm_out(T, X2.narrow(1, j, D - j), H.slice(0, j, D).slice(1, j, j + w));
    M.baddbmm_(T.view({n, C, w}), Xc.narrow(2, j, w).transpose(1, 2));
  }
  return M + M.transpose(1, 2);
}

// A and B [N, C, C] f64. On CUDA they are stored candidate-minor ([C, C, N] memory), so a warp's
// loads of A_i, B_i for 32 consecutive candidates are coalesced; elsewhere contiguous.
at::Tensor empty_scores(const at::Tensor& X) {
  const int64_t N = X.size(0), C = X.size(1);
  const auto opt = X.options().dtype(at::kDouble);
  if (X.is_cuda()) return at::empty({C, C, N}, opt).permute({2, 0, 1});
  return at::empty({N, C, C}, opt);
}

// A_i = X̃_i P0 X̃_iᵀ, B_i = X̃_i P0 F P0 X̃_iᵀ (X̃ = scale·X), `chunk` candidates at a time, each
// chunk converted to float64 first. A P0 that is a multiple of I (no labeled points) makes A a
// plain Gram and P0 F P0 a multiple of F.
std::tuple<at::Tensor, at::Tensor> trace_ratio_init(const at::Tensor& X_, const at::Tensor& P0,
                                                    const at::Tensor& F, double scale,
                                                    int64_t chunk, int64_t block) {
  check_trace_ratio_init(X_, P0, F, chunk, block);
  const auto X = X_.contiguous();
  const int64_t N = X.size(0);
  auto A = empty_scores(X);
  auto B = empty_scores(X);
  const bool identity = is_scalar_identity(P0);
  const double p0 = identity ? P0[0][0].item<double>() : 0.0;
  const auto G = identity ? F * (p0 * p0) : at::matmul(at::matmul(P0, F), P0);   // P0 F P0
  const auto HG = half_tril((G + G.t()) * 0.5);
  const auto HP = identity ? at::Tensor() : half_tril(P0);
  const double s2 = scale * scale;
  at::Tensor buf;
  for (int64_t s = 0; s < N; s += chunk) {
    const int64_t e = std::min(N, s + chunk);
    const auto Xc = X.slice(0, s, e).to(at::kDouble);                  // [n, C, D] f64
    A.slice(0, s, e).copy_(
        identity ? at::bmm(Xc, Xc.transpose(1, 2)) * (s2 * p0) : sandwich(Xc, HP, block, buf) * s2);
    B.slice(0, s, e).copy_(sandwich(Xc, HG, block, buf) * s2);
  }
  return {A, B};
}

// X: [N, C, D] f32/f64; P0, F: [D, D] f64 -> (picks [budget] int64 in pick order, gains [budget]
// f64), picks among the `candidates` rows (all when none).
std::tuple<at::Tensor, at::Tensor> greedy_select(
    const at::Tensor& X_, const at::Tensor& P0, const at::Tensor& F_, double scale,
    int64_t budget, int64_t n_forward, int64_t chunk, int64_t block, bool round_scores,
    const c10::optional<at::Tensor>& candidates) {
  check_greedy_select(X_, P0, F_, budget, n_forward, chunk, block, candidates);
  static const auto step = op_handle<StepFn>("fishermask_ext::trace_ratio_step");
  static const auto commit = op_handle<CommitFn>("fishermask_ext::commit_direction");
  const auto X = X_.contiguous();
  const auto F = F_.contiguous();
  const int64_t N = X.size(0), C = X.size(1);
  auto [A, B] = trace_ratio_init(X, P0, F, scale, chunk, block);
  auto P = P0.contiguous().clone();
  const auto eye = at::eye(C, P0.options());
  // Rows never eligible (e.g. the labeled rows of a pool) are simply never picked.
  const auto pickable = candidates.has_value() ? *candidates
                                               : at::ones({N}, X.options().dtype(at::kBool));
  auto selected = at::zeros({N}, X.options().dtype(at::kBool));
  auto order = at::empty({n_forward}, X.options().dtype(at::kLong));
  auto gains = at::empty({n_forward}, X.options().dtype(at::kDouble));
  auto [scores, best] = step.call(A, B, X, c10::nullopt, scale, eye, eye, pickable, 1.0,
                                  round_scores);
  // n_forward picks, then n_forward - budget removals: 2·n_forward - budget commits in all.
  const int64_t n_steps = 2 * n_forward - budget;
  for (int64_t t = 0; t < n_steps; ++t) {
    const bool forward = t < n_forward;
    const auto j = best.reshape({1});
    selected.index_fill_(0, j, forward);
    if (forward) {
      order.narrow(0, t, 1).copy_(j);
      gains.narrow(0, t, 1).copy_(scores.index_select(0, j));
    }
    if (t + 1 == n_steps) break;
    // σ = +1 adds x̃_j to M, σ = -1 removes it (backward pruning): S = (σI + A_j)⁻¹ is Woodbury's
    // inner inverse either way. inv_ex: no error check, so no host sync on CUDA (σI + A_j is
    // invertible by construction: the step scored it finite). S and Q are symmetrised: the
    // update is evaluated in a form that assumes it.
    const double sigma = forward ? 1.0 : -1.0;
    const auto xt_j = X.index_select(0, j).reshape({C, -1}).to(at::kDouble) * scale;  // [C, D]
    const auto S_raw = std::get<0>(
        at::linalg_inv_ex(eye * sigma + A.index_select(0, j).reshape({C, C})));
    const auto S = (S_raw + S_raw.t()) * 0.5;
    const auto Q_raw = B.index_select(0, j).reshape({C, C});
    const auto Q = (Q_raw + Q_raw.t()) * 0.5;
    const auto UV = commit.call(P, F, xt_j, S);                       // [D, 2C] f64
    const bool next_forward = t + 1 < n_forward;
    std::tie(scores, best) = step.call(A, B, X, UV, scale, S, Q,
                                       next_forward ? pickable.logical_and(selected.logical_not())
                                                    : selected,
                                       next_forward ? 1.0 : -1.0, round_scores);
  }
  const auto kept = selected.index_select(0, order);     // the picks backward pruning left
  return {order.masked_select(kept), gains.masked_select(kept)};
}

}  // namespace

TORCH_LIBRARY_IMPL(fishermask_ext, CompositeExplicitAutograd, m) {
  m.impl("trace_ratio_init", &trace_ratio_init);
  m.impl("greedy_select", &greedy_select);
}

}  // namespace fishermask_ext
