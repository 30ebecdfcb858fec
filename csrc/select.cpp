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

// A_i = X̃_i P0 X̃_iᵀ, B_i = X̃_i P0 F P0 X̃_iᵀ (X̃ = scale·X), chunk by chunk, in the dtype of X.
std::tuple<at::Tensor, at::Tensor> init_scores(const at::Tensor& X, const at::Tensor& P0,
                                               const at::Tensor& F, double scale, int64_t chunk) {
  const int64_t N = X.size(0), C = X.size(1);
  auto A = at::empty({N, C, C}, X.options().dtype(at::kDouble));
  auto B = at::empty_like(A);
  const bool identity = is_scalar_identity(P0);
  const auto P0x = P0.to(X.scalar_type()), Fx = F.to(X.scalar_type());
  for (int64_t s = 0; s < N; s += chunk) {
    const int64_t e = std::min(N, s + chunk);
    const auto Xc = X.slice(0, s, e) * scale;                           // [n, C, D]
    const auto Yc = identity ? Xc * P0x[0][0] : at::matmul(Xc, P0x);    // X̃ P0
    A.slice(0, s, e).copy_(at::matmul(Yc, Xc.transpose(1, 2)));
    B.slice(0, s, e).copy_(at::matmul(at::matmul(Yc, Fx), Yc.transpose(1, 2)));
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
    const auto S = at::linalg_inv(eye * sigma + A.index_select(0, j).reshape({C, C}));
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
