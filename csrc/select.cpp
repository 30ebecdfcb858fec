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
                                                  const at::Tensor&, double);

std::tuple<at::Tensor, at::Tensor> step(at::Tensor& A, at::Tensor& B, const at::Tensor& X,
                                        const c10::optional<at::Tensor>& UV, double scale,
                                        const at::Tensor& S, const at::Tensor& Q,
                                        const at::Tensor& eligible, double sigma) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("fishermask_ext::trace_ratio_step", "")
                       .typed<StepFn>();
  return op.call(A, B, X, UV, scale, S, Q, eligible, sigma);
}

bool is_scalar_identity(const at::Tensor& P0) {
  if (P0.numel() == 0) return false;
  return at::equal(P0, at::eye(P0.size(0), P0.options()) * P0[0][0]);
}

constexpr int64_t kBlock = 256;  // column block of the triangular products

// Per candidate, R_i = X_i G X_iᵀ for a symmetric G, in about 5/8 of the multiply-adds of the
// plain product: with H = tril(G) with its diagonal halved, G = H + Hᵀ, so
// X_i G X_iᵀ = M_i + M_iᵀ with M_i = (X_i H) X_iᵀ, and X·H skips H's zero upper blocks.
// Xc: [n, C, D] in the compute dtype; G: [D, D] f64. Returns [n, C, C] f64.
at::Tensor sandwich(const at::Tensor& Xc, const at::Tensor& G) {
  const int64_t D = Xc.size(2);
  auto H = G.tril();
  H.diagonal().mul_(0.5);
  H = H.to(Xc.scalar_type());
  const auto X2 = Xc.reshape({-1, D});                                  // [n·C, D]
  auto T = at::empty_like(X2);
  for (int64_t j = 0; j < D; j += kBlock) {
    const int64_t e = std::min(D, j + kBlock);
    T.narrow(1, j, e - j).copy_(at::mm(X2.narrow(1, j, D - j), H.slice(0, j, D).slice(1, j, e)));
  }
  const auto M = at::bmm(T.view(Xc.sizes()), Xc.transpose(1, 2)).to(at::kDouble);
  return M + M.transpose(1, 2);
}

// A_i = X̃_i P0 X̃_iᵀ, B_i = X̃_i P0 F P0 X̃_iᵀ (X̃ = scale·X), chunk by chunk, the products over X
// in the dtype of X. A P0 that is a multiple of I (no labeled points) makes A a plain Gram.
std::tuple<at::Tensor, at::Tensor> init_scores(const at::Tensor& X, const at::Tensor& P0,
                                               const at::Tensor& F, double scale, int64_t chunk) {
  const int64_t N = X.size(0), C = X.size(1);
  auto A = at::empty({N, C, C}, X.options().dtype(at::kDouble));
  auto B = at::empty_like(A);
  const bool identity = is_scalar_identity(P0);
  const auto G = at::matmul(at::matmul(P0, F), P0);
  const auto G_sym = (G + G.t()) * 0.5;
  const double s2 = scale * scale;
  const double a_scale = identity ? s2 * P0[0][0].item<double>() : s2;
  for (int64_t s = 0; s < N; s += chunk) {
    const int64_t e = std::min(N, s + chunk);
    const auto Xc = X.slice(0, s, e);                                    // [n, C, D]
    A.slice(0, s, e).copy_(
        (identity ? at::bmm(Xc, Xc.transpose(1, 2)).to(at::kDouble) : sandwich(Xc, P0)) * a_scale);
    B.slice(0, s, e).copy_(sandwich(Xc, G_sym) * s2);
  }
  return {A, B};
}

}  // namespace

at::Tensor greedy_select(const at::Tensor& X_, const at::Tensor& P0, const at::Tensor& F,
                         double scale, int64_t budget, int64_t n_forward, int64_t chunk) {
  check_greedy_select(X_, P0, F, budget, n_forward, chunk);
  const auto X = X_.contiguous();
  const int64_t N = X.size(0), C = X.size(1);
  auto [A, B] = init_scores(X, P0, F, scale, chunk);
  auto P = P0.clone();
  const auto eye = at::eye(C, P0.options());
  auto selected = at::zeros({N}, X.options().dtype(at::kBool));
  auto order = at::empty({n_forward}, X.options().dtype(at::kLong));
  auto best = std::get<1>(step(A, B, X, c10::nullopt, scale, eye, eye, selected.logical_not(), 1.0));
  const int64_t n_steps = 2 * n_forward - budget;
  for (int64_t t = 0; t < n_steps; ++t) {
    const bool forward = t < n_forward;
    const auto j = best.reshape({1});
    selected.index_fill_(0, j, forward);
    if (forward) order.narrow(0, t, 1).copy_(j);
    if (t + 1 == n_steps) break;
    const double sigma = forward ? 1.0 : -1.0;
    const auto x_j = X.index_select(0, j).reshape({C, -1}).to(at::kDouble) * scale;  // [C, D]
    const auto u = at::matmul(P, x_j.t());                                         // [D, C]
    // inv_ex: no error check, so no host sync on CUDA (σI + A_j is invertible by construction).
    const auto S = std::get<0>(at::linalg_inv_ex(eye * sigma + A.index_select(0, j).reshape({C, C})));
    const auto v = at::matmul(P, at::matmul(F, u));
    const auto Q = B.index_select(0, j).reshape({C, C});
    P.sub_(at::matmul(at::matmul(u, S), u.t()));
    const bool next_forward = t + 1 < n_forward;
    best = std::get<1>(step(A, B, X, at::cat({u, v}, 1).to(X.scalar_type()), scale, S, Q,
                            next_forward ? selected.logical_not() : selected,
                            next_forward ? 1.0 : -1.0));
  }
  return order.masked_select(selected.index_select(0, order));
}

}  // namespace fishermask_ext
