// CPU kernels of the greedy selection: trace_ratio_step fused over candidates (W, Z = X̃·[u v]
// computed while X_i is in cache, then the C×C update, Cholesky and score), and the CPU
// registration of the device-generic greedy loop.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
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

constexpr int kLanes = 8;  // columns of [u v] per register block

// kLanes values of T as one SIMD value (GCC vector extension: one register on AVX-512/AVX2 for
// float, split into several on narrower targets).
template <typename T>
struct Lanes {
  typedef T type __attribute__((vector_size(kLanes * sizeof(T))));
};

// out[r, b*kLanes + l] = Σ_d x[r, d] · uvp[b, d, l] for R rows of x ([R, D] row-major) and
// NB column blocks: R·NB independent accumulators hide the FMA latency.
template <typename T, int R, int NB>
FM_INLINE void rows_times_uv(const T* x, int64_t D, const T* uvp, T* out, int64_t ldo) {
  using V = typename Lanes<T>::type;
  V acc[R][NB] = {};
  for (int64_t d = 0; d < D; ++d) {
    V u[NB];
    for (int b = 0; b < NB; ++b) std::memcpy(&u[b], uvp + (b * D + d) * kLanes, sizeof(V));
    for (int r = 0; r < R; ++r) {
      const T xv = x[r * D + d];
      for (int b = 0; b < NB; ++b) acc[r][b] += xv * u[b];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int b = 0; b < NB; ++b) std::memcpy(out + r * ldo + b * kLanes, &acc[r][b], sizeof(V));
}

// All column blocks for R rows, up to 4 blocks per pass.
template <typename T, int R>
FM_INLINE void rows_times_all_uv(const T* x, int64_t D, const T* uvp, int64_t nb, T* out,
                                 int64_t ldo) {
  for (int64_t b = 0; b < nb; b += 4) {
    const T* ub = uvp + b * D * kLanes;
    T* ob = out + b * kLanes;
    switch (std::min<int64_t>(4, nb - b)) {
      case 1: rows_times_uv<T, R, 1>(x, D, ub, ob, ldo); break;
      case 2: rows_times_uv<T, R, 2>(x, D, ub, ob, ldo); break;
      case 3: rows_times_uv<T, R, 3>(x, D, ub, ob, ldo); break;
      default: rows_times_uv<T, R, 4>(x, D, ub, ob, ldo); break;
    }
  }
}

// Candidates [begin, end): W, Z from X and packed [u v] (if given), update, score.
template <typename T>
FM_INLINE void step_range(int64_t begin, int64_t end, int C, int64_t D, const T* X,
                          const T* uvp, int64_t nb, double scale, double* A, double* B,
                          const double* S, const double* Q, const bool* eligible,
                          double sigma, double* scores) {
  const int64_t ldo = nb * kLanes;
  std::vector<T> wz(C * ldo);
  std::vector<double> W(C * C), Z(C * C), work(3 * C * C);
  for (int64_t i = begin; i < end; ++i) {
    if (uvp != nullptr) {
      const T* x = X + i * C * D;
      int r = 0;
      for (; r + 4 <= C; r += 4) rows_times_all_uv<T, 4>(x + r * D, D, uvp, nb, &wz[r * ldo], ldo);
      switch (C - r) {
        case 3: rows_times_all_uv<T, 3>(x + r * D, D, uvp, nb, &wz[r * ldo], ldo); break;
        case 2: rows_times_all_uv<T, 2>(x + r * D, D, uvp, nb, &wz[r * ldo], ldo); break;
        case 1: rows_times_all_uv<T, 1>(x + r * D, D, uvp, nb, &wz[r * ldo], ldo); break;
        default: break;
      }
      for (int a = 0; a < C; ++a)
        for (int c = 0; c < C; ++c) {
          W[a * C + c] = scale * static_cast<double>(wz[a * ldo + c]);
          Z[a * C + c] = scale * static_cast<double>(wz[a * ldo + C + c]);
        }
    }
    const double s = candidate_step(C, A + i * C * C, B + i * C * C,
                                    uvp ? W.data() : nullptr, Z.data(), S, Q, sigma, work.data());
    scores[i] = eligible[i] ? s : -std::numeric_limits<double>::infinity();
  }
}

#define FM_STEP_RANGE(T, NAME)                                                                  \
  FM_CLONES void NAME(int64_t begin, int64_t end, int C, int64_t D, const T* X, const T* uvp, \
                      int64_t nb, double scale, double* A, double* B, const double* S,         \
                      const double* Q, const bool* eligible, double sigma, double* scores) {   \
    step_range<T>(begin, end, C, D, X, uvp, nb, scale, A, B, S, Q, eligible, sigma, scores);   \
  }
FM_STEP_RANGE(float, step_range_f32)
FM_STEP_RANGE(double, step_range_f64)

void step_range_any(int64_t b, int64_t e, int C, int64_t D, const float* X, const float* uvp,
                    int64_t nb, double scale, double* A, double* B, const double* S,
                    const double* Q, const bool* el, double sigma, double* scores) {
  step_range_f32(b, e, C, D, X, uvp, nb, scale, A, B, S, Q, el, sigma, scores);
}
void step_range_any(int64_t b, int64_t e, int C, int64_t D, const double* X, const double* uvp,
                    int64_t nb, double scale, double* A, double* B, const double* S,
                    const double* Q, const bool* el, double sigma, double* scores) {
  step_range_f64(b, e, C, D, X, uvp, nb, scale, A, B, S, Q, el, sigma, scores);
}

// [u v] as [nb, D, kLanes], zero-padded to whole register blocks.
at::Tensor pack_uv(const at::Tensor& UV) {
  const int64_t D = UV.size(0), cols = UV.size(1), nb = (cols + kLanes - 1) / kLanes;
  auto padded = at::zeros({D, nb * kLanes}, UV.options());
  padded.narrow(1, 0, cols).copy_(UV);
  return padded.view({D, nb, kLanes}).permute({1, 0, 2}).contiguous();
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
  const auto uvp = UV.has_value() ? pack_uv(*UV) : at::Tensor();
  const int64_t nb = uvp.defined() ? uvp.size(0) : 0;
  auto scores = at::empty({N}, A.options());
  AT_DISPATCH_FLOATING_TYPES(X.scalar_type(), "trace_ratio_step_cpu", [&] {
    const scalar_t* u = uvp.defined() ? uvp.const_data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, N, 16, [&](int64_t b, int64_t e) {
      step_range_any(b, e, static_cast<int>(C), D, X.const_data_ptr<scalar_t>(), u, nb, scale,
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
