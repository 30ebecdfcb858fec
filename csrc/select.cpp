// Device-generic greedy Fisher trace-ratio loop (ALGORITHM.md, step E and "The fast update").
// The chosen index stays a device tensor throughout, so a CUDA run never waits on the host
// inside the loop; only the final compaction of the pick order reads back.
#include "select.h"

#include <ATen/core/dispatch/Dispatcher.h>

#include "checks.h"

namespace fishermask_ext {
namespace {

using StepFn = std::tuple<at::Tensor, at::Tensor>(at::Tensor&, at::Tensor&, const at::Tensor&,
                                                  const c10::optional<at::Tensor>&, double,
                                                  const at::Tensor&, const at::Tensor&,
                                                  const at::Tensor&, double, bool);

std::tuple<at::Tensor, at::Tensor> step(at::Tensor& A, at::Tensor& B, const at::Tensor& X,
                                        const c10::optional<at::Tensor>& UV, double scale,
                                        const at::Tensor& S, const at::Tensor& Q,
                                        const at::Tensor& eligible, double sigma,
                                        bool round_scores) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("fishermask_ext::trace_ratio_step", "")
                       .typed<StepFn>();
  return op.call(A, B, X, UV, scale, S, Q, eligible, sigma, round_scores);
}

bool is_scalar_identity(const at::Tensor& P0) {
  if (P0.numel() == 0) return false;
  return at::equal(P0, at::eye(P0.size(0), P0.options()) * P0[0][0]);
}

// Column block of the triangular products: the largest block that keeps the GEMMs efficient
// (measured on a 2-core Zen 4: 256 for float32, 384 for float64).
int64_t block_for(at::ScalarType t) { return t == at::kDouble ? 384 : 256; }

// H with G = H + Hᵀ for a symmetric G: tril(G) with its diagonal halved, in dtype t.
at::Tensor half_tril(const at::Tensor& G, at::ScalarType t) {
  auto H = G.tril();
  H.diagonal().mul_(0.5);
  return H.to(t);
}

// Per candidate, R_i = X_i G X_iᵀ for a symmetric G = H + Hᵀ (H from half_tril), in about 5/8
// of the multiply-adds of the plain product: X_i G X_iᵀ = M_i + M_iᵀ with M_i = (X_i H) X_iᵀ,
// and X·H skips H's zero upper blocks. Column block by column block, T = X·H[:, j:e] goes into
// the reusable buffer `buf` and M accumulates T_i X_i[:, j:e]ᵀ.
// Xc: [n, C, D] in the compute dtype. Returns [n, C, C] f64.
at::Tensor sandwich(const at::Tensor& Xc, const at::Tensor& H, at::Tensor& buf) {
  const int64_t n = Xc.size(0), C = Xc.size(1), D = Xc.size(2);
  const int64_t blk = block_for(Xc.scalar_type());
  const auto X2 = Xc.reshape({-1, D});                                  // [n·C, D]
  if (buf.numel() < n * C * blk) buf = at::empty({n * C * blk}, Xc.options());
  auto M = at::zeros({n, C, C}, Xc.options());
  for (int64_t j = 0; j < D; j += blk) {
    const int64_t w = std::min(D, j + blk) - j;
    auto T = buf.narrow(0, 0, n * C * w).view({n * C, w});
    at::mm_out(T, X2.narrow(1, j, D - j), H.slice(0, j, D).slice(1, j, j + w));
    M.baddbmm_(T.view({n, C, w}), Xc.narrow(2, j, w).transpose(1, 2));
  }
  const auto Md = M.to(at::kDouble);
  return Md + Md.transpose(1, 2);
}

// A_i = X̃_i P0 X̃_iᵀ, B_i = X̃_i P0 F P0 X̃_iᵀ (X̃ = scale·X), chunk by chunk, the products over X
// in the dtype of X. A P0 that is a multiple of I (no labeled points) makes A a plain Gram.
std::tuple<at::Tensor, at::Tensor> init_scores(const at::Tensor& X, const at::Tensor& P0,
                                               const at::Tensor& F, double scale, int64_t chunk) {
  const int64_t N = X.size(0), C = X.size(1);
  auto A = at::empty({N, C, C}, X.options().dtype(at::kDouble));
  auto B = at::empty_like(A);
  const bool identity = is_scalar_identity(P0);
  const double p0 = identity ? P0[0][0].item<double>() : 0.0;
  const auto G = identity ? F * (p0 * p0) : at::matmul(at::matmul(P0, F), P0);   // P0 F P0
  const auto HG = half_tril((G + G.t()) * 0.5, X.scalar_type());
  const auto HP = identity ? at::Tensor() : half_tril(P0, X.scalar_type());
  const double s2 = scale * scale;
  const double a_scale = identity ? s2 * p0 : s2;
  at::Tensor buf;
  for (int64_t s = 0; s < N; s += chunk) {
    const int64_t e = std::min(N, s + chunk);
    const auto Xc = X.slice(0, s, e);                                    // [n, C, D]
    A.slice(0, s, e).copy_(
        (identity ? at::bmm(Xc, Xc.transpose(1, 2)).to(at::kDouble) : sandwich(Xc, HP, buf)) *
        a_scale);
    B.slice(0, s, e).copy_(sandwich(Xc, HG, buf) * s2);
  }
  return {A, B};
}

}  // namespace

at::Tensor greedy_select(const at::Tensor& X_, const at::Tensor& P0, const at::Tensor& F_,
                         double scale, int64_t budget, int64_t n_forward, int64_t chunk,
                         bool round_scores) {
  check_greedy_select(X_, P0, F_, budget, n_forward, chunk);
  const auto X = X_.contiguous();
  const auto F = F_.contiguous();
  const int64_t N = X.size(0), C = X.size(1);
  auto [A, B] = init_scores(X, P0, F, scale, chunk);
  auto P = P0.contiguous().clone();
  const auto eye = at::eye(C, P0.options());
  auto selected = at::zeros({N}, X.options().dtype(at::kBool));
  auto order = at::empty({n_forward}, X.options().dtype(at::kLong));
  auto best = std::get<1>(step(A, B, X, c10::nullopt, scale, eye, eye, selected.logical_not(), 1.0,
                               round_scores));
  const int64_t n_steps = 2 * n_forward - budget;
  for (int64_t t = 0; t < n_steps; ++t) {
    const bool forward = t < n_forward;
    const auto j = best.reshape({1});
    selected.index_fill_(0, j, forward);
    if (forward) order.narrow(0, t, 1).copy_(j);
    if (t + 1 == n_steps) break;
    const double sigma = forward ? 1.0 : -1.0;
    const auto xt_j = X.index_select(0, j).reshape({C, -1}).to(at::kDouble) * scale;  // [C, D]
    // inv_ex: no error check, so no host sync on CUDA (σI + A_j is invertible by construction).
    // S and Q are symmetrised: the step's update is evaluated in a form that assumes it.
    const auto S_raw = std::get<0>(
        at::linalg_inv_ex(eye * sigma + A.index_select(0, j).reshape({C, C})));
    const auto S = (S_raw + S_raw.t()) * 0.5;
    const auto Q_raw = B.index_select(0, j).reshape({C, C});
    const auto Q = (Q_raw + Q_raw.t()) * 0.5;
    at::Tensor UV64;                                                               // [D, 2C]
    if (X.is_cpu()) {
      UV64 = commit_direction_cpu(P, F, xt_j, S);
    } else {
      // Row-vector forms (uᵀ = x̃_j P, vᵀ = uᵀ F P, P symmetric): wide products.
      const auto ut = at::mm(xt_j, P);
      const auto vt = at::mm(at::mm(ut, F), P);
      P.addmm_(at::mm(ut.t(), S), ut, 1.0, -1.0);                                 // P -= u S uᵀ
      UV64 = at::cat({ut, vt}, 0).t();
    }
    const bool next_forward = t + 1 < n_forward;
    const auto UV = UV64.to(X.scalar_type()).contiguous();
    best = std::get<1>(step(A, B, X, UV, scale, S, Q,
                            next_forward ? selected.logical_not() : selected,
                            next_forward ? 1.0 : -1.0, round_scores));
  }
  return order.masked_select(selected.index_select(0, order));
}

}  // namespace fishermask_ext
