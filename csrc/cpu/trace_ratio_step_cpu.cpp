// CPU kernel of trace_ratio_step: per group of kGroup candidates, W, Z = X̃·[u v] through the
// register-blocked product while X_i is in cache, then the shared per-candidate math
// (csrc/trace_ratio_math.h) with one candidate per SIMD lane, then the argmax.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "checks.h"
#include "cpu/rows_times.h"
#include "trace_ratio_math.h"

namespace fishermask_ext {
namespace cpu {

// kGroup candidates side by side, one per lane: C = 10 makes the per-candidate loops too short
// to vectorise any other way.
constexpr int kGroup = 8;
using VG = Lanes<double, kGroup>::type;
using MG = Lanes<int64_t, kGroup>::type;   // a lane mask: all ones or all zeros per lane

}  // namespace cpu

template <>
struct LaneOps<cpu::VG> {
  using V = cpu::VG;
  using Mask = cpu::MG;
  FM_HD static Mask all_lanes() { return Mask{} - 1; }
  FM_HD static V splat(double x) { return V{} + x; }
  FM_HD static Mask positive(V v) { return v > 0; }
  FM_HD static Mask both(Mask a, Mask b) { return a & b; }
  FM_HD static V pick(Mask m, V a, V b) { return m ? a : b; }
  FM_HD static V sqrt(V v) {
    for (int l = 0; l < cpu::kGroup; ++l) v[l] = std::sqrt(v[l]);
    return v;
  }
  FM_HD static Mask is_number(V v) { return v == v; }
};

namespace cpu {
namespace {

// Strides of A and B (equal, checked): any layout, so CUDA's candidate-minor one works too.
struct Layout3 {
  int64_t s0, s1, s2;
  int64_t at(int64_t i, int r, int c) const { return i * s0 + r * s1 + c * s2; }
};

// Candidates g .. g+n-1 (n <= kGroup; the other lanes are zero padding): update with W, Z (when
// wz is given: row k·C + r holds candidate k's row r of X·[u v], unscaled), then score.
// lanes: 5·C·C + C aligned lane values of scratch.
FM_INLINE void group_step(int C, int n, int64_t g, double* A, double* B, Layout3 ab,
                          const double* wz, int64_t ldw, double scale, const double* S,
                          const double* Q, double sigma, VG* lanes, double* scores) {
  const int CC = C * C;
  VG *a = lanes, *b = a + CC, *w = b + CC, *z = w + CC, *t = z + CC, *inv_diag = t + CC;
  for (int q = 0; q < CC; ++q) a[q] = b[q] = VG{};
  for (int k = 0; k < n; ++k)
    for (int r = 0; r < C; ++r)
      for (int c = 0; c < C; ++c) {
        a[r * C + c][k] = A[ab.at(g + k, r, c)];
        b[r * C + c][k] = B[ab.at(g + k, r, c)];
      }
  if (wz != nullptr) {
    for (int q = 0; q < CC; ++q) w[q] = z[q] = VG{};
    for (int k = 0; k < n; ++k)
      for (int r = 0; r < C; ++r)
        for (int c = 0; c < C; ++c) {
          w[r * C + c][k] = scale * wz[(k * C + r) * ldw + c];
          z[r * C + c][k] = scale * wz[(k * C + r) * ldw + C + c];
        }
    commit_update<0, VG>(C, a, b, w, z, t, S, Q);
    for (int k = 0; k < n; ++k)
      for (int r = 0; r < C; ++r)
        for (int c = 0; c < C; ++c) {
          A[ab.at(g + k, r, c)] = a[r * C + c][k];
          B[ab.at(g + k, r, c)] = b[r * C + c][k];
        }
  }
  // w, z, t are free again: the factor, L⁻¹B and its transpose reuse them.
  const VG s = trace_ratio_score<0, VG>(C, a, b, sigma, w, z, t, inv_diag);
  for (int k = 0; k < n; ++k) scores[g + k] = s[k];
}

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
  // Lane values need sizeof(VG)-byte alignment (the compiler assumes it; std::vector does not
  // give it), hence one spare VG of room and std::align.
  const int64_t n_lanes = 5 * C * C + C;
  std::vector<double> raw((n_lanes + 1) * kGroup);
  void* base = raw.data();
  size_t space = raw.size() * sizeof(double);
  VG* lanes = static_cast<VG*>(std::align(sizeof(VG), n_lanes * sizeof(VG), base, space));
  for (int64_t g = begin; g < end; g += kGroup) {
    const int n = static_cast<int>(std::min<int64_t>(kGroup, end - g));
    if (uv != nullptr) rows_times_packed<Bk, T>(X + g * C * D, n * C, D, uv, lay, wz.data(), pad);
    group_step(C, n, g, A, B, ab, uv ? wz.data() : nullptr, ldu, scale, S, Q, sigma, lanes,
               scores);
    for (int k = 0; k < n; ++k)
      if (!eligible[g + k]) scores[g + k] = -std::numeric_limits<double>::infinity();
  }
}

// trace_ratio_update: candidates [begin, end) with their products already in wz ([N, C, 2C]
// f64, candidate-major), kGroup at a time through the same group_step.
FM_INLINE void update_range(int64_t begin, int64_t end, int C, const double* wz, double scale,
                            double* A, double* B, Layout3 ab, const double* S, const double* Q,
                            const bool* eligible, double sigma, double* scores) {
  const int64_t n_lanes = 5 * C * C + C;
  std::vector<double> raw((n_lanes + 1) * kGroup);
  void* base = raw.data();
  size_t space = raw.size() * sizeof(double);
  VG* lanes = static_cast<VG*>(std::align(sizeof(VG), n_lanes * sizeof(VG), base, space));
  for (int64_t g = begin; g < end; g += kGroup) {
    const int n = static_cast<int>(std::min<int64_t>(kGroup, end - g));
    group_step(C, n, g, A, B, ab, wz ? wz + g * C * 2 * C : nullptr, 2 * C, scale, S, Q, sigma,
               lanes, scores);
    for (int k = 0; k < n; ++k)
      if (!eligible[g + k]) scores[g + k] = -std::numeric_limits<double>::infinity();
  }
}

#define FM_UPDATE_RANGE(TARGET, NAME)                                                         \
  TARGET void NAME(int64_t b, int64_t e, int C, const double* wz, double scale, double* A,   \
                   double* B, Layout3 ab, const double* S, const double* Q, const bool* el,  \
                   double sigma, double* scores) {                                           \
    update_range(b, e, C, wz, scale, A, B, ab, S, Q, el, sigma, scores);                     \
  }
FM_UPDATE_RANGE(FM_TARGET_V4, update_range_v4)
FM_UPDATE_RANGE(FM_TARGET_V3, update_range_v3)
FM_UPDATE_RANGE(, update_range_base)

// One compiled copy per instruction set and storage type (see cpu_isa()).
#define FM_STEP_RANGE(TARGET, NAME, BK, T)                                                    \
  TARGET void NAME(int64_t b, int64_t e, int C, int64_t D, const T* X, const double* uv,     \
                   PackLayout lay, double scale, double* A, double* B, Layout3 ab,           \
                   const double* S, const double* Q, const bool* el, double sigma,           \
                   double* scores) {                                                         \
    step_range<BK, T>(b, e, C, D, X, uv, lay, scale, A, B, ab, S, Q, el, sigma, scores);     \
  }
FM_STEP_RANGE(FM_TARGET_V4, step_range_v4, BlockingV4, float)
FM_STEP_RANGE(FM_TARGET_V4, step_range_v4, BlockingV4, double)
FM_STEP_RANGE(FM_TARGET_V3, step_range_v3, BlockingV3, float)
FM_STEP_RANGE(FM_TARGET_V3, step_range_v3, BlockingV3, double)
FM_STEP_RANGE(, step_range_base, BlockingBase, float)
FM_STEP_RANGE(, step_range_base, BlockingBase, double)

template <typename T, typename... Args>
void step_range_for(Isa isa, Args... args) {
  switch (isa) {
    case Isa::v4: step_range_v4(args...); break;
    case Isa::v3: step_range_v3(args...); break;
    default: step_range_base(args...); break;
  }
}

// First eligible index of maximal score (the first eligible one if all are -inf; -1 if none).
int64_t first_best(const double* scores, const bool* eligible, int64_t N) {
  int64_t best = -1;
  for (int64_t i = 0; i < N; ++i)
    if (eligible[i] && (best < 0 || scores[i] > scores[best])) best = i;
  return best;
}

// Parity rounding (the argmax sees float32-rounded scores, as the reference code), then the
// first best eligible index.
std::tuple<at::Tensor, at::Tensor> finish_scores(at::Tensor& scores, const at::Tensor& eligible,
                                                 bool round_scores) {
  const int64_t N = scores.size(0);
  if (round_scores) {
    double* s = scores.data_ptr<double>();
    for (int64_t i = 0; i < N; ++i) s[i] = static_cast<double>(static_cast<float>(s[i]));
  }
  const int64_t best = first_best(scores.const_data_ptr<double>(),
                                  eligible.const_data_ptr<bool>(), N);
  return {scores, at::scalar_tensor(best, scores.options().dtype(at::kLong))};
}

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
      step_range_for<scalar_t>(isa, b, e, static_cast<int>(C), D, X.const_data_ptr<scalar_t>(),
                               u, lay, scale, A.data_ptr<double>(), B.data_ptr<double>(), ab,
                               S.const_data_ptr<double>(), Q.const_data_ptr<double>(),
                               eligible.const_data_ptr<bool>(), sigma,
                               scores.data_ptr<double>());
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
    auto run = isa == Isa::v4 ? update_range_v4 : isa == Isa::v3 ? update_range_v3
                                                                   : update_range_base;
    run(b, e, static_cast<int>(C), wz, scale, A.data_ptr<double>(), B.data_ptr<double>(), ab,
        S.const_data_ptr<double>(), Q.const_data_ptr<double>(),
        eligible.const_data_ptr<bool>(), sigma, scores.data_ptr<double>());
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
