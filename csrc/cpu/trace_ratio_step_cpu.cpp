// CPU kernel of trace_ratio_step: per group of kGroup candidates, W, Z = X̃·[u v] through the
// register-blocked product while X_i is in cache, then the shared per-candidate math
// (csrc/trace_ratio_math.h) with one candidate per SIMD lane, then the argmax.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <limits>
#include <vector>

#include "checks.h"
#include "cpu/rows_times.h"
#include "cpu/step_group.h"

namespace fishermask_ext {
namespace cpu {
namespace {

// Candidates [begin, end), kGroup at a time. Their kGroup·C rows of X (a multiple of kRows) go
// through the register-blocked product; a short last group through a zero-padded copy.
template <class Bk, typename T>
FM_INLINE void step_range(int64_t begin, int64_t end, int C, int64_t D, const T* X,
                          const double* uv, PackLayout lay, double scale, double* A, double* B,
                          Layout3 ab, const double* S, const double* Q, const bool* eligible,
                          double sigma, double* scores) {
  const int64_t ldu = lay.width();
  std::vector<double> wz(uv != nullptr ? kGroup * C * ldu : 0);
  std::vector<T> pad;
  LaneScratch scratch(C);
  for (int64_t g = begin; g < end; g += kGroup) {
    const int n = static_cast<int>(std::min<int64_t>(kGroup, end - g));
    if (uv != nullptr) rows_times_packed<Bk, T>(X + g * C * D, n * C, D, uv, lay, wz.data(), pad);
    group_step(C, n, g, A, B, ab, uv ? wz.data() : nullptr, ldu, scale, S, Q, sigma,
               scratch.lanes, scores);
    mask_ineligible(g, n, eligible, scores);
  }
}

// trace_ratio_update: candidates [begin, end) with their products already in wz ([N, C, 2C]
// f64, candidate-major), kGroup at a time through the same group_step.
FM_INLINE void update_range(int64_t begin, int64_t end, int C, const double* wz, double scale,
                            double* A, double* B, Layout3 ab, const double* S, const double* Q,
                            const bool* eligible, double sigma, double* scores) {
  LaneScratch scratch(C);
  for (int64_t g = begin; g < end; g += kGroup) {
    const int n = static_cast<int>(std::min<int64_t>(kGroup, end - g));
    group_step(C, n, g, A, B, ab, wz ? wz + g * C * 2 * C : nullptr, 2 * C, scale, S, Q, sigma,
               scratch.lanes, scores);
    mask_ineligible(g, n, eligible, scores);
  }
}

#define FM_UPDATE_RANGE(TARGET, I)                                                            \
  TARGET void update_range_isa(IsaTag<I>, int64_t b, int64_t e, int C, const double* wz,     \
                               double scale, double* A, double* B, Layout3 ab,               \
                               const double* S, const double* Q, const bool* el,             \
                               double sigma, double* scores) {                               \
    update_range(b, e, C, wz, scale, A, B, ab, S, Q, el, sigma, scores);                     \
  }
FM_FOR_EACH_ISA(FM_UPDATE_RANGE)

// One compiled copy per instruction set and storage type (see cpu_isa()).
#define FM_STEP_RANGE_T(TARGET, I, T)                                                         \
  TARGET void step_range_isa(IsaTag<I>, int64_t b, int64_t e, int C, int64_t D, const T* X,  \
                             const double* uv, PackLayout lay, double scale, double* A,      \
                             double* B, Layout3 ab, const double* S, const double* Q,        \
                             const bool* el, double sigma, double* scores) {                 \
    step_range<RowsBlocking<I>, T>(b, e, C, D, X, uv, lay, scale, A, B, ab, S, Q, el, sigma, \
                                   scores);                                                  \
  }
#define FM_STEP_RANGE(TARGET, I) FM_STEP_RANGE_T(TARGET, I, float) FM_STEP_RANGE_T(TARGET, I, double)
FM_FOR_EACH_ISA(FM_STEP_RANGE)

std::tuple<at::Tensor, at::Tensor> trace_ratio_step_cpu(
    at::Tensor& A, at::Tensor& B, const at::Tensor& X_, const c10::optional<at::Tensor>& UV,
    double scale, const at::Tensor& S_, const at::Tensor& Q_, const at::Tensor& eligible_,
    double sigma, bool round_scores) {
  check_trace_ratio_step(A, B, X_, UV, S_, Q_, eligible_);
  const int64_t N = A.size(0), C = A.size(1), D = X_.size(2);
  const auto X = X_.contiguous();
  const auto S = S_.contiguous(), Q = Q_.contiguous(), eligible = eligible_.contiguous();
  const Isa isa = cpu_isa();
  const auto lay = pack_layout_for(isa, 2 * C);
  const auto uvp = UV.has_value() ? pack_uv(*UV, lay) : at::Tensor();
  const Layout3 ab{A.stride(0), A.stride(1), A.stride(2)};
  auto scores = at::empty({N}, A.options());
  const double* u = uvp.defined() ? uvp.const_data_ptr<double>() : nullptr;
  AT_DISPATCH_FLOATING_TYPES(X.scalar_type(), "trace_ratio_step_cpu", [&] {
    at::parallel_for(0, N, 2 * kGroup, [&](int64_t b, int64_t e) {
      on_isa(isa, [&](auto tag) {
        step_range_isa(tag, b, e, static_cast<int>(C), D, X.const_data_ptr<scalar_t>(), u, lay,
                       scale, A.data_ptr<double>(), B.data_ptr<double>(), ab,
                       S.const_data_ptr<double>(), Q.const_data_ptr<double>(),
                       eligible.const_data_ptr<bool>(), sigma, scores.data_ptr<double>());
      });
    });
  });
  return finish_scores(scores, eligible, round_scores);
}

std::tuple<at::Tensor, at::Tensor> trace_ratio_update_cpu(
    at::Tensor& A, at::Tensor& B, const at::Tensor& WZ_, double scale, const at::Tensor& S_,
    const at::Tensor& Q_, const at::Tensor& eligible_, double sigma, bool round_scores) {
  check_trace_ratio_update(A, B, WZ_, S_, Q_, eligible_);
  const int64_t N = A.size(0), C = A.size(1);
  const auto WZ = WZ_.numel() ? WZ_.contiguous() : WZ_;
  const auto S = S_.contiguous(), Q = Q_.contiguous(), eligible = eligible_.contiguous();
  const Layout3 ab{A.stride(0), A.stride(1), A.stride(2)};
  auto scores = at::empty({N}, A.options());
  const double* wz = WZ.size(2) ? WZ.const_data_ptr<double>() : nullptr;
  const Isa isa = cpu_isa();
  at::parallel_for(0, N, 2 * kGroup, [&](int64_t b, int64_t e) {
    on_isa(isa, [&](auto tag) {
      update_range_isa(tag, b, e, static_cast<int>(C), wz, scale, A.data_ptr<double>(),
                       B.data_ptr<double>(), ab, S.const_data_ptr<double>(),
                       Q.const_data_ptr<double>(), eligible.const_data_ptr<bool>(), sigma,
                       scores.data_ptr<double>());
    });
  });
  return finish_scores(scores, eligible, round_scores);
}

}  // namespace
}  // namespace cpu

TORCH_LIBRARY_IMPL(fishermask_ext, CPU, m) {
  m.impl("trace_ratio_step", &cpu::trace_ratio_step_cpu);
  m.impl("trace_ratio_update", &cpu::trace_ratio_update_cpu);
}

}  // namespace fishermask_ext
