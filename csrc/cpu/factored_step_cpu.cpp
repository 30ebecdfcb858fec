// CPU kernel of factored_step: per group of kGroup candidates, W_i, Z_i = X̃_i·[u v] through the
// factors while they are in cache, X_i = [G_i ⊗ h̄_iᵀ | R_i] never formed:
//   U_i = h̄_iᵀ·M_h   (M_h [d̄, C·2C], the classifier rows of [u v]; register-blocked product)
//   W_i Z_i = G_i·U_i + R_i·M_R   (M_R [D_r, 2C]; the same product over R's C rows)
// float32 factors are converted in registers (float32 is storage only). Then the shared
// group_step updates and scores the group, as the dense step does (csrc/cpu/step_group.h).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "checks.h"
#include "cpu/rows_times.h"
#include "cpu/step_group.h"

namespace fishermask_ext {
namespace cpu {
namespace {

struct Packed {       // a packed [rows, lay.width()] f64 product matrix (rows_times.h)
  const double* data;
  PackLayout lay;
};

// Candidates [begin, end). g, h, r: the factors (r null when D_r = 0); mh, mr null: no update.
template <class Bk, typename T>
FM_INLINE void factored_range(int64_t begin, int64_t end, int C, int64_t d, int64_t dr,
                              const T* g, const T* h, const T* r, Packed mh, Packed mr,
                              double scale, double* A, double* B, Layout3 ab, const double* S,
                              const double* Q, const bool* eligible, double sigma,
                              double* scores) {
  const int C2 = 2 * C;
  const int64_t ldh = mh.lay.width(), ldr = mr.lay.width();
  const bool update = mh.data != nullptr;
  std::vector<double> u(update ? kGroup * ldh : 0), wr(update && r ? kGroup * C * ldr : 0);
  std::vector<double> wz(update ? kGroup * C * C2 : 0);
  std::vector<T> pad_h, pad_r;
  LaneScratch scratch(C);
  for (int64_t i0 = begin; i0 < end; i0 += kGroup) {
    const int n = static_cast<int>(std::min<int64_t>(kGroup, end - i0));
    if (update) {
      rows_times_packed<Bk, T>(h + i0 * d, n, d, mh.data, mh.lay, u.data(), pad_h);
      if (r) rows_times_packed<Bk, T>(r + i0 * C * dr, n * C, dr, mr.data, mr.lay, wr.data(), pad_r);
      for (int k = 0; k < n; ++k) {
        const T* gk = g + (i0 + k) * C * C;
        const double* uk = u.data() + k * ldh;               // U_k[k', j] at k'·2C + j
        for (int c = 0; c < C; ++c) {
          double* out = wz.data() + (k * C + c) * C2;
          for (int j = 0; j < C2; ++j) out[j] = r ? wr[(k * C + c) * ldr + j] : 0.0;
          for (int kk = 0; kk < C; ++kk) {                    // += G_k[c, kk]·U_k[kk, :]
            const double gv = static_cast<double>(gk[c * C + kk]);
            for (int j = 0; j < C2; ++j) out[j] += gv * uk[kk * C2 + j];
          }
        }
      }
    }
    group_step(C, n, i0, A, B, ab, update ? wz.data() : nullptr, C2, scale, S, Q, sigma,
               scratch.lanes, scores);
    mask_ineligible(i0, n, eligible, scores);
  }
}

#define FM_FACTORED_RANGE_T(TARGET, I, T)                                                     \
  TARGET void factored_range_isa(IsaTag<I>, int64_t b, int64_t e, int C, int64_t d,          \
                                 int64_t dr, const T* g, const T* h, const T* r, Packed mh,  \
                                 Packed mr, double scale, double* A, double* B, Layout3 ab,  \
                                 const double* S, const double* Q, const bool* el,           \
                                 double sigma, double* scores) {                             \
    factored_range<RowsBlocking<I>, T>(b, e, C, d, dr, g, h, r, mh, mr, scale, A, B, ab, S,  \
                                       Q, el, sigma, scores);                                \
  }
#define FM_FACTORED_RANGE(TARGET, I) \
  FM_FACTORED_RANGE_T(TARGET, I, float) FM_FACTORED_RANGE_T(TARGET, I, double)
FM_FOR_EACH_ISA(FM_FACTORED_RANGE)

std::tuple<at::Tensor, at::Tensor> factored_step_cpu(
    at::Tensor& A, at::Tensor& B, const at::Tensor& G_, const at::Tensor& H_,
    const c10::optional<at::Tensor>& R_, const c10::optional<at::Tensor>& UV, double scale,
    const at::Tensor& S_, const at::Tensor& Q_, const at::Tensor& eligible_, double sigma,
    bool round_scores) {
  const int64_t D = check_factors(G_, H_, R_);
  const int64_t N = G_.size(0), C = G_.size(1), d = H_.size(1), dr = D - C * d;
  // trace_ratio_update's checks, with the products' shape (never allocated: a zero-stride view).
  const auto wz_shape = at::zeros({1}, A.options()).expand({N, C, UV.has_value() ? 2 * C : 0});
  check_trace_ratio_update(A, B, wz_shape, S_, Q_, eligible_);
  if (UV.has_value()) check_shape(*UV, {D, 2 * C}, "UV");
  const auto G = G_.contiguous(), H = H_.contiguous();
  const auto R = dr > 0 ? R_->contiguous() : at::Tensor();
  const auto S = S_.contiguous(), Q = Q_.contiguous(), eligible = eligible_.contiguous();
  const Isa isa = cpu_isa();
  at::Tensor mh, mr;
  Packed ph{nullptr, pack_layout_for(isa, 2 * C * C)}, pr{nullptr, pack_layout_for(isa, 2 * C)};
  if (UV.has_value()) {
    TORCH_CHECK(UV->scalar_type() == at::kDouble, "UV must be float64");
    // The classifier rows of [u v] as [d̄, C·2C]: U_i = h̄_iᵀ·M_h holds h̄_iᵀ [u v]_k' per k'.
    const auto Mh = UV->narrow(0, 0, C * d).reshape({C, d, 2 * C}).transpose(0, 1)
                        .reshape({d, 2 * C * C});
    mh = pack_uv(Mh, ph.lay);
    ph.data = mh.const_data_ptr<double>();
    if (dr > 0) {
      mr = pack_uv(UV->narrow(0, C * d, dr), pr.lay);
      pr.data = mr.const_data_ptr<double>();
    }
  }
  const Layout3 ab{A.stride(0), A.stride(1), A.stride(2)};
  auto scores = at::empty({N}, A.options());
  AT_DISPATCH_FLOATING_TYPES(G.scalar_type(), "factored_step_cpu", [&] {
    const scalar_t* r = dr > 0 ? R.const_data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, N, 2 * kGroup, [&](int64_t b, int64_t e) {
      on_isa(isa, [&](auto tag) {
        factored_range_isa(tag, b, e, static_cast<int>(C), d, dr, G.const_data_ptr<scalar_t>(),
                           H.const_data_ptr<scalar_t>(), r, ph, pr, scale, A.data_ptr<double>(),
                           B.data_ptr<double>(), ab, S.const_data_ptr<double>(),
                           Q.const_data_ptr<double>(), eligible.const_data_ptr<bool>(), sigma,
                           scores.data_ptr<double>());
      });
    });
  });
  return finish_scores(scores, eligible, round_scores);
}

}  // namespace
}  // namespace cpu

TORCH_LIBRARY_IMPL(fishermask_ext, CPU, m) {
  m.impl("factored_step", &cpu::factored_step_cpu);
}

}  // namespace fishermask_ext
