// CPU kernels of the greedy selection: trace_ratio_step fused over candidates (W, Z = X̃·[u v]
// computed while X_i is in cache, then the C×C update, Cholesky and score), and the CPU
// registration of the device-generic greedy loop.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <type_traits>
#include <vector>

#include "checks.h"
#include "select.h"

// Run-time dispatch to AVX-512 / AVX2+FMA code paths on x86-64 (GCC function multiversioning).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define FM_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FM_CLONES
#endif
#define FM_INLINE inline __attribute__((always_inline))

namespace fishermask_ext {
namespace {

constexpr int kLanes = 8;  // columns of [u v] per full register block
constexpr int kTail = 4;   // columns of the narrow last block (float64 only, see pack_layout)
constexpr int kRows = 8;   // rows of X per register block

// L values of T as one SIMD value (GCC vector extension: one register on AVX-512/AVX2 for
// float, split into several on narrower targets).
template <typename T, int L>
struct Lanes {
  typedef T type __attribute__((vector_size(L * sizeof(T))));
};

// out[r, c] = Σ_d x[r, d] · uv[d, c] for kRows rows of x ([kRows, D] row-major), the NB full
// column blocks starting at uv (row stride ldu) and, when TL > 0, one narrow block of TL columns
// after them. kRows·(NB + 1) independent accumulators hide the FMA latency; uv stays in L2.
template <typename T, int NB, int TL>
FM_INLINE void rows_times_uv(const T* x, int64_t D, const T* uv, int64_t ldu, T* out,
                             int64_t ldo) {
  using V = typename Lanes<T, kLanes>::type;
  using VT = typename Lanes<T, (TL > 0 ? TL : 1)>::type;
  V acc[kRows][NB > 0 ? NB : 1] = {};
  VT tacc[kRows] = {};
  for (int64_t d = 0; d < D; ++d) {
    const T* ud = uv + d * ldu;
    V u[NB > 0 ? NB : 1];
    VT ut;
    for (int b = 0; b < NB; ++b) std::memcpy(&u[b], ud + b * kLanes, sizeof(V));
    if constexpr (TL > 0) std::memcpy(&ut, ud + NB * kLanes, sizeof(VT));
    for (int r = 0; r < kRows; ++r) {
      const T xv = x[r * D + d];
      for (int b = 0; b < NB; ++b) acc[r][b] += xv * u[b];
      if constexpr (TL > 0) tacc[r] += xv * ut;
    }
  }
  for (int r = 0; r < kRows; ++r) {
    for (int b = 0; b < NB; ++b) std::memcpy(out + r * ldo + b * kLanes, &acc[r][b], sizeof(V));
    if constexpr (TL > 0) std::memcpy(out + r * ldo + NB * kLanes, &tacc[r], sizeof(VT));
  }
}

// Column layout of the packed [u v]: nb full blocks of kLanes, then a narrow block of kTail
// columns when `tail` (float64 only: there a kTail block is half the FMA work of a padded full
// one; for float32 both cost one instruction, so float32 pads to whole blocks).
struct PackLayout {
  int64_t nb;
  bool tail;
  int64_t width() const { return nb * kLanes + (tail ? kTail : 0); }
};

template <typename T>
PackLayout pack_layout(int64_t cols) {
  const int64_t rem = cols % kLanes;
  if (sizeof(T) == 8 && rem > 0 && rem <= kTail) return {cols / kLanes, true};
  return {(cols + kLanes - 1) / kLanes, false};
}

// All columns for kRows rows: passes of up to 3 full blocks, the narrow block in the last one.
template <typename T>
FM_INLINE void rows_times_all_uv(const T* x, int64_t D, const T* uv, PackLayout lay, T* out) {
  const int64_t ldu = lay.width();
  int64_t b = 0;
  do {
    const int nbp = static_cast<int>(std::min<int64_t>(3, lay.nb - b));
    const bool last = b + nbp >= lay.nb;
    const T* ub = uv + b * kLanes;
    T* ob = out + b * kLanes;
    if (last && lay.tail) {
      switch (nbp) {
        case 0: rows_times_uv<T, 0, kTail>(x, D, ub, ldu, ob, ldu); break;
        case 1: rows_times_uv<T, 1, kTail>(x, D, ub, ldu, ob, ldu); break;
        case 2: rows_times_uv<T, 2, kTail>(x, D, ub, ldu, ob, ldu); break;
        default: rows_times_uv<T, 3, kTail>(x, D, ub, ldu, ob, ldu); break;
      }
    } else {
      switch (nbp) {
        case 1: rows_times_uv<T, 1, 0>(x, D, ub, ldu, ob, ldu); break;
        case 2: rows_times_uv<T, 2, 0>(x, D, ub, ldu, ob, ldu); break;
        default: rows_times_uv<T, 3, 0>(x, D, ub, ldu, ob, ldu); break;
      }
    }
    b += nbp;
  } while (b < lay.nb);
}

// out[r, :] = x[r, :] · uv for `rows` rows of x ([rows, D]): kRows at a time, a short last
// block through a zero-padded copy (`pad`: scratch, grown on first use). out: [rows, width].
template <typename T>
FM_INLINE void rows_times_packed(const T* x, int64_t rows, int64_t D, const T* uv,
                                 PackLayout lay, T* out, std::vector<T>& pad) {
  const int64_t ldu = lay.width(), full = rows / kRows * kRows;
  for (int64_t r = 0; r < full; r += kRows) rows_times_all_uv<T>(x + r * D, D, uv, lay, out + r * ldu);
  if (full < rows) {
    pad.assign(kRows * (D + ldu), T(0));
    std::memcpy(pad.data(), x + full * D, (rows - full) * D * sizeof(T));
    T* tmp = pad.data() + kRows * D;
    rows_times_all_uv<T>(pad.data(), D, uv, lay, tmp);
    std::memcpy(out + full * ldu, tmp, (rows - full) * ldu * sizeof(T));
  }
}

// ---- the per-candidate C×C work, kGroup candidates at a time (one per SIMD lane) ----
// The same arithmetic as candidate_step (trace_ratio.h, which the CUDA kernel runs per thread),
// with every scalar replaced by a vector of kGroup candidates: C = 10 makes the per-candidate
// loops too short to vectorise any other way.

constexpr int kGroup = 8;
using VG = Lanes<double, kGroup>::type;

FM_INLINE VG splat(double x) { return VG{} + x; }

// acc[r, c] (+|-)= Σ_k a[r, k] · b[c, k] over C×C lane matrices (b transposed).
template <bool kSub>
FM_INLINE void lane_mmt(int C, const VG* a, const VG* b, VG* acc) {
  for (int r = 0; r < C; ++r)
    for (int c = 0; c < C; ++c) {
      VG s = {};
      for (int k = 0; k < C; ++k) s += a[r * C + k] * b[c * C + k];
      acc[r * C + c] = kSub ? acc[r * C + c] - s : acc[r * C + c] + s;
    }
}

// out[r, c] = Σ_k a[r, k] · m[k, c] for lane matrices a and one shared C×C matrix m.
FM_INLINE void lane_mm_shared(int C, const VG* a, const double* m, VG* out) {
  for (int r = 0; r < C; ++r)
    for (int c = 0; c < C; ++c) {
      VG s = {};
      for (int k = 0; k < C; ++k) s += a[r * C + k] * m[k * C + c];
      out[r * C + c] = s;
    }
}

// In place lower Cholesky of the lane matrix m; lanes that are not positive definite are
// cleared in `ok` (and computed on with a unit pivot so that every value stays finite).
FM_INLINE void lane_cholesky(int C, VG* m, VG* inv_diag, VG& ok) {
  for (int j = 0; j < C; ++j) {
    VG d = m[j * C + j];
    for (int k = 0; k < j; ++k) d -= m[j * C + k] * m[j * C + k];
    const auto pos = d > 0;                              // lanes of all ones where d > 0
    ok = pos ? ok : splat(0.0);
    d = pos ? d : splat(1.0);
    for (int l = 0; l < kGroup; ++l) d[l] = std::sqrt(d[l]);
    m[j * C + j] = d;
    inv_diag[j] = 1.0 / d;
    for (int i = j + 1; i < C; ++i) {
      VG s = m[i * C + j];
      for (int k = 0; k < j; ++k) s -= m[i * C + k] * m[j * C + k];
      m[i * C + j] = s * inv_diag[j];
    }
  }
}

// In place y = L⁻¹ y for every column of the lane matrix y.
FM_INLINE void lane_solve_lower(int C, const VG* L, const VG* inv_diag, VG* y) {
  for (int c = 0; c < C; ++c)
    for (int r = 0; r < C; ++r) {
      VG s = y[r * C + c];
      for (int k = 0; k < r; ++k) s -= L[r * C + k] * y[k * C + c];
      y[r * C + c] = s * inv_diag[r];
    }
}

// kGroup candidates starting at A, B (n of them real; the rest are padding lanes): the update
// with W, Z (when wz is given: row k·C + a of wz holds candidate k's row a of X̃[u v] / scale)
// and the scores. scratch: 8·C·C + C lane values.
template <typename T>
FM_INLINE void group_step(int C, int n, double* A, double* B, const T* wz, int64_t ldw,
                          double scale, const double* S, const double* Q, double sigma,
                          VG* scratch, double* scores) {
  const int CC = C * C;
  VG *a = scratch, *b = a + CC, *w = b + CC, *z = w + CC, *t = z + CC, *g = t + CC,
     *e = g + CC, *y = e + CC, *inv_diag = y + CC;
  for (int q = 0; q < CC; ++q) a[q] = b[q] = VG{};
  for (int k = 0; k < n; ++k)
    for (int q = 0; q < CC; ++q) {
      a[q][k] = A[k * CC + q];
      b[q][k] = B[k * CC + q];
    }
  if (wz != nullptr) {
    for (int q = 0; q < CC; ++q) w[q] = z[q] = VG{};
    for (int k = 0; k < n; ++k)
      for (int r = 0; r < C; ++r)
        for (int c = 0; c < C; ++c) {
          w[r * C + c][k] = scale * static_cast<double>(wz[(k * C + r) * ldw + c]);
          z[r * C + c][k] = scale * static_cast<double>(wz[(k * C + r) * ldw + C + c]);
        }
    lane_mm_shared(C, w, S, t);                              // T = W S
    lane_mmt<true>(C, t, w, a);                              // A -= T Wᵀ
    lane_mm_shared(C, t, Q, g);                              // T Q
    for (int q = 0; q < CC; ++q) g[q] = z[q] - 0.5 * g[q];   // G = Z - ½ T Q
    for (int q = 0; q < CC; ++q) e[q] = VG{};
    lane_mmt<false>(C, t, g, e);                             // E = T Gᵀ
    for (int r = 0; r < C; ++r)
      for (int c = 0; c < C; ++c) b[r * C + c] -= e[r * C + c] + e[c * C + r];
    for (int k = 0; k < n; ++k)
      for (int q = 0; q < CC; ++q) {
        A[k * CC + q] = a[q][k];
        B[k * CC + q] = b[q][k];
      }
  }
  for (int q = 0; q < CC; ++q) t[q] = sigma * a[q];          // I + σ A
  for (int j = 0; j < C; ++j) t[j * C + j] += 1.0;
  VG ok = splat(1.0);
  lane_cholesky(C, t, inv_diag, ok);
  for (int q = 0; q < CC; ++q) y[q] = b[q];
  lane_solve_lower(C, t, inv_diag, y);                       // L⁻¹ B
  for (int r = 0; r < C; ++r)
    for (int c = 0; c < C; ++c) g[r * C + c] = y[c * C + r];  // (L⁻¹ B)ᵀ
  lane_solve_lower(C, t, inv_diag, g);                       // L⁻¹ B L⁻ᵀ
  VG tr = {};
  for (int j = 0; j < C; ++j) tr += g[j * C + j];
  for (int k = 0; k < n; ++k)
    scores[k] = ok[k] != 0 ? sigma * tr[k] : -std::numeric_limits<double>::infinity();
}

// Candidates [begin, end): W, Z from X and packed [u v] (if given), update, score, kGroup
// candidates at a time. Their kGroup·C rows of X (a multiple of kRows) go through the
// register-blocked product; a short last group through a zero-padded copy.
template <typename T>
FM_INLINE void step_range(int64_t begin, int64_t end, int C, int64_t D, const T* X,
                          const T* uv, PackLayout lay, double scale, double* A, double* B,
                          const double* S, const double* Q, const bool* eligible,
                          double sigma, double* scores) {
  const int64_t ldu = lay.width();
  std::vector<T> wz(uv != nullptr ? kGroup * C * ldu : 0), pad;
  // Lane values need sizeof(VG)-byte alignment (the compiler assumes it; alignof of a templated
  // vector typedef does not say so, and std::vector does not give it).
  const int64_t n_lanes = 8 * C * C + C;
  std::vector<double> raw((n_lanes + 1) * kGroup);
  void* base = raw.data();
  size_t space = raw.size() * sizeof(double);
  VG* scratch = static_cast<VG*>(std::align(sizeof(VG), n_lanes * sizeof(VG), base, space));
  for (int64_t g = begin; g < end; g += kGroup) {
    const int n = static_cast<int>(std::min<int64_t>(kGroup, end - g));
    if (uv != nullptr) rows_times_packed<T>(X + g * C * D, n * C, D, uv, lay, wz.data(), pad);
    group_step<T>(C, n, A + g * C * C, B + g * C * C, uv ? wz.data() : nullptr, ldu, scale, S, Q,
                  sigma, scratch, scores + g);
    for (int k = 0; k < n; ++k)
      if (!eligible[g + k]) scores[g + k] = -std::numeric_limits<double>::infinity();
  }
}

#define FM_STEP_RANGE(T, NAME)                                                                  \
  FM_CLONES void NAME(int64_t begin, int64_t end, int C, int64_t D, const T* X, const T* uv,  \
                      PackLayout lay, double scale, double* A, double* B, const double* S,     \
                      const double* Q, const bool* eligible, double sigma, double* scores) {   \
    step_range<T>(begin, end, C, D, X, uv, lay, scale, A, B, S, Q, eligible, sigma, scores);   \
  }
FM_STEP_RANGE(float, step_range_f32)
FM_STEP_RANGE(double, step_range_f64)

void step_range_any(int64_t b, int64_t e, int C, int64_t D, const float* X, const float* uv,
                    PackLayout lay, double scale, double* A, double* B, const double* S,
                    const double* Q, const bool* el, double sigma, double* scores) {
  step_range_f32(b, e, C, D, X, uv, lay, scale, A, B, S, Q, el, sigma, scores);
}
void step_range_any(int64_t b, int64_t e, int C, int64_t D, const double* X, const double* uv,
                    PackLayout lay, double scale, double* A, double* B, const double* S,
                    const double* Q, const bool* el, double sigma, double* scores) {
  step_range_f64(b, e, C, D, X, uv, lay, scale, A, B, S, Q, el, sigma, scores);
}

// [u v] as [D, lay.width()] row-major, zero-padded to the register blocks.
at::Tensor pack_uv(const at::Tensor& UV, PackLayout lay) {
  auto packed = at::zeros({UV.size(0), lay.width()}, UV.options());
  packed.narrow(1, 0, UV.size(1)).copy_(UV);
  return packed;
}

// ---- the commit: u = P x̃ᵀ, v = P F u, P -= u S uᵀ (streaming passes over P and F) ----

// out [D, C] = M Vᵀ for rows [d0, d1) of M [D, D] (Vᵀ packed as [D, width]); with kUpdate,
// each block of rows is then updated, M[d, :] -= Σ_c a[d, c] · Ut[c, :], once its products
// are taken (so they see the old rows).
template <bool kUpdate>
FM_INLINE void rows_times_vt(std::conditional_t<kUpdate, double*, const double*> M, int64_t D,
                             const double* vp, PackLayout lay, int C, int64_t d0, int64_t d1,
                             double* out, const double* a, const double* Ut) {
  constexpr int64_t kSpan = 64;                   // rows per block: still in L2 for the update
  const int64_t ldu = lay.width();
  std::vector<double> ob(kSpan * ldu), pad;
  for (int64_t r0 = d0; r0 < d1; r0 += kSpan) {
    const int64_t r1 = std::min(d1, r0 + kSpan);
    double* obr = ob.data();
    rows_times_packed<double>(M + r0 * D, r1 - r0, D, vp, lay, obr, pad);
    for (int64_t d = r0; d < r1; ++d)
      for (int c = 0; c < C; ++c) out[d * C + c] = obr[(d - r0) * ldu + c];
    if constexpr (kUpdate) {
      for (int64_t d = r0; d < r1; ++d) {
        double* m = M + d * D;
        for (int c = 0; c < C; ++c) {
          const double ac = a[d * C + c];
          const double* uc = Ut + c * D;
          for (int64_t f = 0; f < D; ++f) m[f] -= ac * uc[f];
        }
      }
    }
  }
}

FM_CLONES void rows_times_vt_plain(const double* M, int64_t D, const double* vp, PackLayout lay,
                                   int C, int64_t d0, int64_t d1, double* out) {
  rows_times_vt<false>(M, D, vp, lay, C, d0, d1, out, nullptr, nullptr);
}
FM_CLONES void rows_times_vt_update(double* M, int64_t D, const double* vp, PackLayout lay,
                                    int C, int64_t d0, int64_t d1, double* out,
                                    const double* a, const double* Ut) {
  rows_times_vt<true>(M, D, vp, lay, C, d0, d1, out, a, Ut);
}

// out [D, C] = M Vᵀ for M [D, D] and V [C, D]; with a, Ut also M -= a · Ut, row block by block.
// M is written only with the update.
void times_vt(const at::Tensor& M, const at::Tensor& V, at::Tensor& out,
              const at::Tensor* a = nullptr, const at::Tensor* Ut = nullptr) {
  const int64_t D = M.size(0);
  const int C = static_cast<int>(V.size(0));
  const auto lay = pack_layout<double>(C);
  const auto vp = pack_uv(V.t(), lay);
  const double* v = vp.const_data_ptr<double>();
  double* o = out.data_ptr<double>();
  at::parallel_for(0, D, kRows, [&](int64_t b, int64_t e) {
    if (a == nullptr) {
      rows_times_vt_plain(M.const_data_ptr<double>(), D, v, lay, C, b, e, o);
    } else {
      rows_times_vt_update(M.data_ptr<double>(), D, v, lay, C, b, e, o,
                           a->const_data_ptr<double>(), Ut->const_data_ptr<double>());
    }
  });
}

}  // namespace

at::Tensor commit_direction_cpu(at::Tensor& P, const at::Tensor& F, const at::Tensor& xt,
                                const at::Tensor& S) {
  TORCH_CHECK(P.is_contiguous() && F.is_contiguous() && P.scalar_type() == at::kDouble &&
                  F.scalar_type() == at::kDouble, "P and F must be contiguous float64");
  const int64_t D = P.size(0), C = xt.size(0);
  TORCH_CHECK(C >= 1 && xt.size(1) == D, "xt must be [C, D] with C >= 1, got ", xt.sizes());
  auto u = at::empty({D, C}, P.options());
  times_vt(P, xt, u);                             // u = P x̃ᵀ
  const auto ut = u.t().contiguous();
  auto w = at::empty({D, C}, P.options());
  times_vt(F, ut, w);                             // w = F u
  const auto a = at::mm(u, S).contiguous();       // u S
  auto v = at::empty({D, C}, P.options());
  times_vt(P, w.t(), v, &a, &ut);                 // v = P w, then P -= (u S) uᵀ by row blocks
  return at::cat({u, v}, 1);
}

namespace {

// First eligible index of maximal score (the first eligible one if all are -inf; -1 if none).
int64_t first_best(const double* scores, const bool* eligible, int64_t N) {
  int64_t best = -1;
  for (int64_t i = 0; i < N; ++i)
    if (eligible[i] && (best < 0 || scores[i] > scores[best])) best = i;
  return best;
}

std::tuple<at::Tensor, at::Tensor> trace_ratio_step_cpu(
    at::Tensor& A, at::Tensor& B, const at::Tensor& X_, const c10::optional<at::Tensor>& UV,
    double scale, const at::Tensor& S_, const at::Tensor& Q_, const at::Tensor& eligible_,
    double sigma, bool round_scores) {
  check_trace_ratio_step(A, B, X_, UV, S_, Q_, eligible_);
  const int64_t N = A.size(0), C = A.size(1), D = X_.size(2);
  const auto X = X_.contiguous();
  const auto S = S_.contiguous(), Q = Q_.contiguous(), eligible = eligible_.contiguous();
  const auto lay = X.scalar_type() == at::kDouble ? pack_layout<double>(2 * C)
                                                  : pack_layout<float>(2 * C);
  const auto uvp = UV.has_value() ? pack_uv(*UV, lay) : at::Tensor();
  auto scores = at::empty({N}, A.options());
  AT_DISPATCH_FLOATING_TYPES(X.scalar_type(), "trace_ratio_step_cpu", [&] {
    const scalar_t* u = uvp.defined() ? uvp.const_data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, N, 16, [&](int64_t b, int64_t e) {
      step_range_any(b, e, static_cast<int>(C), D, X.const_data_ptr<scalar_t>(), u, lay, scale,
                     A.data_ptr<double>(), B.data_ptr<double>(), S.const_data_ptr<double>(),
                     Q.const_data_ptr<double>(), eligible.const_data_ptr<bool>(), sigma,
                     scores.data_ptr<double>());
    });
  });
  if (round_scores) {       // parity mode: the argmax sees float32-rounded scores
    double* s = scores.data_ptr<double>();
    for (int64_t i = 0; i < N; ++i) s[i] = static_cast<double>(static_cast<float>(s[i]));
  }
  const int64_t best = first_best(scores.const_data_ptr<double>(),
                                  eligible.const_data_ptr<bool>(), N);
  return {scores, at::scalar_tensor(best, A.options().dtype(at::kLong))};
}

}  // namespace

TORCH_LIBRARY_IMPL(fishermask_ext, CPU, m) {
  m.impl("trace_ratio_step", &trace_ratio_step_cpu);
  m.impl("greedy_select", &greedy_select);
}

}  // namespace fishermask_ext
