// The products selection takes through factored embeddings X_i = [G_i ⊗ h̄_iᵀ | R_i]
// (docs/ALGORITHM.md, "Factored embeddings"; fishermask_ext/store/factored.py), written once
// over ATen and registered CompositeExplicitAutograd, so they run wherever ATen does (CPU and
// CUDA). X is never formed: every product goes through one float64 GEMM over the converted
// h̄ rows (the big one, d̄ wide), batched C×C products and the R part. Twins:
// fishermask_ext/ops/reference.py (factored_times, factored_gram, factored_init).
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "checks.h"

namespace fishermask_ext {
namespace {

at::Tensor f64(const at::Tensor& t) { return t.to(at::kDouble); }

// The classifier rows of M [C·d̄ + D_r, k] as [d̄, C·k]: out[m, k'·k + j] = M[k'·d̄ + m, j], so
// h̄_iᵀ·out holds h̄_iᵀ M_k' for every class block k' at once (one GEMM for all candidates).
at::Tensor classifier_rows(const at::Tensor& M, int64_t C, int64_t d) {
  const int64_t k = M.size(1);      // explicit sizes: -1 is ambiguous for empty tensors
  return M.narrow(0, 0, C * d).reshape({C, d, k}).transpose(0, 1).reshape({d, C * k});
}

void check_m(const at::Tensor& G, const at::Tensor& M, int64_t D, const char* name) {
  TORCH_CHECK(M.scalar_type() == at::kDouble, name, " must be float64, got ", M.scalar_type());
  TORCH_CHECK(M.dim() == 2 && M.size(0) == D, name, " must be [D, k] with D = C·d̄ + D_r = ",
              D, ", got ", M.sizes());
  check_same_device(G, M, "G", name);
}

// X_i M = G_i U_i + R_i M_R with U_i[k', j] = Σ_m h̄_i[m] M[k'·d̄ + m, j].
at::Tensor factored_times(const at::Tensor& G, const at::Tensor& H,
                          const c10::optional<at::Tensor>& R, const at::Tensor& M) {
  const int64_t D = check_factors(G, H, R);
  check_m(G, M, D, "M");
  const int64_t n = G.size(0), C = G.size(1), d = H.size(1), k = M.size(1);
  const auto U = at::mm(f64(H), classifier_rows(M, C, d)).view({n, C, k});
  auto out = at::bmm(f64(G), U);                                         // [n, C, k]
  if (R.has_value() && R->size(2) > 0)
    out.view({n * C, k}).addmm_(f64(*R).reshape({n * C, D - C * d}),
                                M.narrow(0, C * d, D - C * d));
  return out;
}

// Σ_i X_iᵀX_i. Block (k, k') of the classifier block is Σ_i (G_iᵀG_i)[k, k'] h̄_i h̄_iᵀ: for each
// k, one GEMM h̄ᵀ·[V_i[k, k'] h̄_i]_{k' >= k} gives the blocks right of the diagonal, mirrored
// below (about half the multiply-adds of all C² blocks).
at::Tensor factored_gram(const at::Tensor& G, const at::Tensor& H,
                         const c10::optional<at::Tensor>& R) {
  const int64_t D = check_factors(G, H, R);
  const int64_t n = G.size(0), C = G.size(1), d = H.size(1), Cd = C * d;
  const auto G64 = f64(G), H64 = f64(H);
  const auto V = at::bmm(G64.transpose(1, 2), G64);                     // [n, C, C]
  auto out = at::zeros({D, D}, G64.options());
  for (int64_t k = 0; k < C && d > 0; ++k) {
    const auto W = (V.select(1, k).narrow(1, k, C - k).unsqueeze(2) * H64.unsqueeze(1))
                       .reshape({n, (C - k) * d});
    out.narrow(0, k * d, d).narrow(1, k * d, (C - k) * d).copy_(at::mm(H64.t(), W));
    for (int64_t k2 = k + 1; k2 < C; ++k2)
      out.narrow(0, k2 * d, d).narrow(1, k * d, d)
          .copy_(out.narrow(0, k * d, d).narrow(1, k2 * d, d).t());
  }
  if (R.has_value() && R->size(2) > 0) {
    const int64_t Dr = R->size(2);
    const auto R64 = f64(*R);
    // Cross block [(k, m), r] = Σ_i h̄_i[m] (G_iᵀR_i)[k, r].
    const auto Y = at::bmm(G64.transpose(1, 2), R64).reshape({n, C * Dr});
    const auto hr = at::mm(H64.t(), Y).view({d, C, Dr}).transpose(0, 1).reshape({Cd, Dr});
    out.narrow(0, 0, Cd).narrow(1, Cd, Dr).copy_(hr);
    out.narrow(0, Cd, Dr).narrow(1, 0, Cd).copy_(hr.t());
    const auto R2 = R64.reshape({n * C, Dr});
    out.narrow(0, Cd, Dr).narrow(1, Cd, Dr).copy_(at::mm(R2.t(), R2));
  }
  return out;
}

// X_i M X_iᵀ for a symmetric M, through its pieces (see Sandwich::of).
struct Sandwich {
  int64_t C, d, P;
  at::Tensor pairs, mirrored;   // flat k·C + k' of the pairs k <= k', and of k' <= k
  at::Tensor Mhh, Mhr, Mrr;     // [d̄, P·d̄], [d̄, C·D_r], [D_r, D_r]

  Sandwich(const at::Tensor& M, int64_t C_, int64_t d_) : C(C_), d(d_), P(C_ * (C_ + 1) / 2) {
    std::vector<int64_t> p, q;
    for (int64_t k = 0; k < C; ++k)
      for (int64_t k2 = k; k2 < C; ++k2) {
        p.push_back(k * C + k2);
        q.push_back(k2 * C + k);
      }
    const auto lopt = M.options().dtype(at::kLong);
    pairs = at::tensor(p, at::kLong).to(lopt.device());
    mirrored = at::tensor(q, at::kLong).to(lopt.device());
    const int64_t Cd = C * d, Dr = M.size(0) - Cd;
    // Mhh[m, p·d̄ + m'] = M[k·d̄ + m, k'·d̄ + m'] for pair p = (k, k'): T_i's symmetric half.
    Mhh = M.narrow(0, 0, Cd).narrow(1, 0, Cd).reshape({C, d, C, d}).permute({1, 0, 2, 3})
              .reshape({d, C * C, d}).index_select(1, pairs).reshape({d, P * d});
    if (Dr > 0) {
      Mhr = classifier_rows(M.narrow(1, Cd, Dr), C, d);
      Mrr = M.narrow(0, Cd, Dr).narrow(1, Cd, Dr);
    }
  }

  // G_i T_i G_iᵀ + G_i Y_i R_iᵀ + R_i Y_iᵀ G_iᵀ + R_i M_RR R_iᵀ with T_i[k, k'] =
  // h̄_iᵀ M_kk' h̄_i (the d̄×d̄ blocks of the classifier block) and Y_i = h̄_iᵀ M_hR.
  at::Tensor of(const at::Tensor& G, const at::Tensor& H, const at::Tensor& R) const {
    const int64_t n = G.size(0);
    const auto E = at::mm(H, Mhh).view({n, P, d});                        // h̄ᵀ M_kk' per pair
    const auto Tp = at::bmm(E, H.unsqueeze(2)).view({n, P});
    auto T = at::empty({n, C * C}, G.options());
    T.index_copy_(1, pairs, Tp);
    T.index_copy_(1, mirrored, Tp);                                       // T_i is symmetric
    auto out = at::bmm(at::bmm(G, T.view({n, C, C})), G.transpose(1, 2));
    if (R.defined()) {
      const int64_t Dr = R.size(2);
      const auto Y = at::mm(H, Mhr).view({n, C, Dr});
      const auto cross = at::bmm(at::bmm(G, Y), R.transpose(1, 2));
      const auto RM = at::mm(R.reshape({n * C, Dr}), Mrr).view({n, C, Dr});   // R_i M_RR
      out += cross + cross.transpose(1, 2) + at::bmm(RM, R.transpose(1, 2));
    }
    return (out + out.transpose(1, 2)) * 0.5;        // exactly symmetric, as the kernels assume
  }
};

bool is_scalar_identity(const at::Tensor& P0) {
  if (P0.numel() == 0) return false;
  return at::equal(P0, at::eye(P0.size(0), P0.options()) * P0[0][0]);
}

std::tuple<at::Tensor, at::Tensor> factored_init(const at::Tensor& G, const at::Tensor& H,
                                                 const c10::optional<at::Tensor>& R,
                                                 const at::Tensor& P0, const at::Tensor& F,
                                                 double scale, int64_t chunk) {
  const int64_t D = check_factors(G, H, R);
  check_m(G, P0, D, "P0");
  check_m(G, F, D, "F");
  TORCH_CHECK(P0.size(1) == D && F.size(1) == D, "P0 and F must be [D, D]");
  check_chunk(chunk);
  const int64_t n = G.size(0), C = G.size(1), d = H.size(1);
  auto A = at::empty({n, C, C}, G.options().dtype(at::kDouble));
  auto B = at::empty_like(A);
  const bool identity = is_scalar_identity(P0);
  const double p0 = identity ? P0[0][0].item<double>() : 0.0;
  auto Q = identity ? F * (p0 * p0) : at::matmul(at::matmul(P0, F), P0);   // P0 F P0
  Q = (Q + Q.t()) * 0.5;
  const Sandwich withQ(Q, C, d);
  const c10::optional<Sandwich> withP = identity ? c10::nullopt
                                                 : c10::optional<Sandwich>(Sandwich(P0, C, d));
  const double s2 = scale * scale;
  for (int64_t s = 0; s < n; s += chunk) {
    const int64_t e = std::min(n, s + chunk);
    const auto Gc = f64(G.slice(0, s, e)), Hc = f64(H.slice(0, s, e));
    const auto Rc = R.has_value() && R->size(2) > 0 ? f64(R->slice(0, s, e)) : at::Tensor();
    if (identity) {     // A_i = p0·X_i X_iᵀ = p0·(|h̄_i|² G_i G_iᵀ + R_i R_iᵀ)
      auto a = at::bmm(Gc, Gc.transpose(1, 2)) * Hc.square().sum(1).view({-1, 1, 1});
      if (Rc.defined()) a += at::bmm(Rc, Rc.transpose(1, 2));
      A.slice(0, s, e).copy_(a * (s2 * p0));
    } else {
      A.slice(0, s, e).copy_(withP->of(Gc, Hc, Rc) * s2);
    }
    B.slice(0, s, e).copy_(withQ.of(Gc, Hc, Rc) * s2);
  }
  return {A, B};
}

// Every device without a fused kernel: the products, then the shared update-and-score op, a
// chunk of candidates at a time when A and B are candidate-major (so the float64 factors and
// the [n, C, 2C] products stay chunk-sized; ops/sizes.py factored_rows is the same rule), else
// in one pass (a candidate-minor slice would not be one dense layout).
std::tuple<at::Tensor, at::Tensor> factored_step(
    at::Tensor& A, at::Tensor& B, const at::Tensor& G, const at::Tensor& H,
    const c10::optional<at::Tensor>& R, const c10::optional<at::Tensor>& UV, double scale,
    const at::Tensor& S, const at::Tensor& Q, const at::Tensor& eligible, double sigma,
    bool round_scores) {
  using UpdateFn = std::tuple<at::Tensor, at::Tensor>(at::Tensor&, at::Tensor&, const at::Tensor&,
                                                      double, const at::Tensor&, const at::Tensor&,
                                                      const at::Tensor&, double, bool);
  static const auto update = c10::Dispatcher::singleton()
                                 .findSchemaOrThrow("fishermask_ext::trace_ratio_update", "")
                                 .typed<UpdateFn>();
  const int64_t D = check_factors(G, H, R);
  const int64_t n = G.size(0), C = G.size(1), dr = D - C * H.size(1);
  TORCH_CHECK(A.dim() == 3 && A.size(0) == n && A.size(1) == C,
              "A must be [N, C, C] with G's N and C, got ", A.sizes());
  const int64_t per_row = 8 * (3 * C * C + H.size(1) + C * dr);
  const int64_t chunk = A.is_contiguous() && B.is_contiguous()
                            ? std::max<int64_t>(1, (int64_t{64} << 20) / per_row) : n;
  auto scores = at::empty({n}, A.options());
  for (int64_t s = 0; s < n || s == 0; s += chunk) {
    const int64_t e = std::min(n, s + chunk);
    const auto Rc = R.has_value() ? c10::optional<at::Tensor>(R->slice(0, s, e)) : c10::nullopt;
    const auto WZ = UV.has_value()
                        ? factored_times(G.slice(0, s, e), H.slice(0, s, e), Rc, *UV)
                        : at::empty({e - s, C, 0}, A.options());
    auto As = A.slice(0, s, e), Bs = B.slice(0, s, e);
    scores.slice(0, s, e).copy_(std::get<0>(update.call(
        As, Bs, WZ, scale, S, Q, eligible.slice(0, s, e), sigma, round_scores)));
    if (e == n) break;
  }
  // The first best eligible index over all chunks: the update op's rule, once more (scores
  // already carry -inf where not eligible and the parity rounding).
  auto none = at::full({}, -1, scores.options().dtype(at::kLong));
  if (!eligible.any().item<bool>()) return {scores, none};
  const auto masked = at::where(eligible, scores, at::full({}, -INFINITY, scores.options()));
  if (at::isinf(masked).logical_and(masked < 0).all().item<bool>())
    return {scores, eligible.nonzero().select(0, 0).select(0, 0)};
  return {scores, masked.argmax()};
}

}  // namespace

TORCH_LIBRARY_IMPL(fishermask_ext, CompositeExplicitAutograd, m) {
  m.impl("factored_step", &factored_step);
  m.impl("factored_times", &factored_times);
  m.impl("factored_gram", &factored_gram);
  m.impl("factored_init", &factored_init);
}

}  // namespace fishermask_ext
