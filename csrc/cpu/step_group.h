// What the CPU step kernels share (trace_ratio_step_cpu.cpp: dense X; factored_step_cpu.cpp:
// factored embeddings): kGroup candidates side by side, one per SIMD lane, updated and scored by
// the per-candidate math of csrc/trace_ratio_math.h from their W_i, Z_i however produced; then
// parity rounding and the argmax.
#pragma once
#include <ATen/ATen.h>

#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "cpu/isa.h"
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

// The 5·C·C + C lane values of group_step's scratch. They need sizeof(VG)-byte alignment (the
// compiler assumes it; std::vector does not give it), hence one spare VG of room and std::align.
struct LaneScratch {
  std::vector<double> raw;
  VG* lanes;
  explicit LaneScratch(int C) : raw((5 * C * C + C + 1) * kGroup) {
    void* base = raw.data();
    size_t space = raw.size() * sizeof(double);
    lanes = static_cast<VG*>(std::align(sizeof(VG), (5 * C * C + C) * sizeof(VG), base, space));
  }
};

FM_INLINE void mask_ineligible(int64_t g, int n, const bool* eligible, double* scores) {
  for (int k = 0; k < n; ++k)
    if (!eligible[g + k]) scores[g + k] = -std::numeric_limits<double>::infinity();
}

// First eligible index of maximal score (the first eligible one if all are -inf; -1 if none).
inline int64_t first_best(const double* scores, const bool* eligible, int64_t N) {
  int64_t best = -1;
  for (int64_t i = 0; i < N; ++i)
    if (eligible[i] && (best < 0 || scores[i] > scores[best])) best = i;
  return best;
}

// Parity rounding (the argmax sees float32-rounded scores, as the reference code), then the
// first best eligible index.
inline std::tuple<at::Tensor, at::Tensor> finish_scores(at::Tensor& scores, const at::Tensor& eligible,
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

}  // namespace cpu
}  // namespace fishermask_ext
