// CPU kernels of the greedy selection: trace_ratio_step fused over candidates (W, Z = X̃·[u v]
// computed while X_i is in cache, then the C×C update, Cholesky and score), and the CPU
// registration of the device-generic greedy loop.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <vector>

#include "checks.h"
#include "select.h"
#include "trace_ratio.h"

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

// Candidates [begin, end): W, Z from X and packed [u v] (if given), update, score. Rows of X
// are taken kRows at a time across candidate boundaries, for groups of `group` candidates
// (group·C is a multiple of kRows); a short last group goes through a zero-padded copy.
template <typename T>
FM_INLINE void step_range(int64_t begin, int64_t end, int C, int64_t D, const T* X,
                          const T* uv, PackLayout lay, double scale, double* A, double* B,
                          const double* S, const double* Q, const bool* eligible,
                          double sigma, double* scores) {
  const int64_t ldu = lay.width();
  const int64_t group = kRows / std::gcd<int64_t>(C, kRows);
  std::vector<T> wz(uv != nullptr ? group * C * ldu : 0), pad;
  std::vector<double> W(C * C), Z(C * C), work(3 * C * C);
  for (int64_t g = begin; g < end; g += group) {
    const int64_t n = std::min(group, end - g);
    if (uv != nullptr) {
      const int64_t rows = n * C, full = rows / kRows * kRows;
      const T* x = X + g * C * D;
      for (int64_t r = 0; r < full; r += kRows)
        rows_times_all_uv<T>(x + r * D, D, uv, lay, &wz[r * ldu]);
      if (full < rows) {
        if (pad.empty()) pad.resize(kRows * D);
        std::fill(pad.begin(), pad.end(), T(0));
        std::memcpy(pad.data(), x + full * D, (rows - full) * D * sizeof(T));
        std::vector<T> tmp(kRows * ldu);
        rows_times_all_uv<T>(pad.data(), D, uv, lay, tmp.data());
        std::memcpy(&wz[full * ldu], tmp.data(), (rows - full) * ldu * sizeof(T));
      }
    }
    for (int64_t k = 0; k < n; ++k) {
      const int64_t i = g + k;
      if (uv != nullptr) {
        const T* wzi = &wz[k * C * ldu];
        for (int a = 0; a < C; ++a)
          for (int c = 0; c < C; ++c) {
            W[a * C + c] = scale * static_cast<double>(wzi[a * ldu + c]);
            Z[a * C + c] = scale * static_cast<double>(wzi[a * ldu + C + c]);
          }
      }
      const double s = candidate_step(C, A + i * C * C, B + i * C * C,
                                      uv ? W.data() : nullptr, Z.data(), S, Q, sigma,
                                      work.data());
      scores[i] = eligible[i] ? s : -std::numeric_limits<double>::infinity();
    }
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
    double sigma) {
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
