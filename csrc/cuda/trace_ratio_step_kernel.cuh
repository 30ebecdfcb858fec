// The CUDA kernel of trace_ratio_step and its per-C dispatch, as templates: included by
// trace_ratio_step_f32.cu and trace_ratio_step_f64.cu, which instantiate one storage type each
// (two translation units, so the 34 kernels compile in parallel), and driven by the op in
// trace_ratio_step_cuda.cu.
//
// One launch per greedy step. One thread per candidate; each warp first forms W_i, Z_i =
// X̃_i·[u v] for its 32 candidates cooperatively (lanes stride over d, so the reads of X are
// coalesced; float64 sums), then every thread runs the shared per-candidate math
// (csrc/trace_ratio_math.h, as the CPU's SIMD lanes do) on its own candidate, masks, and the
// block argmax is reduced by the last block to finish. No scratch in global memory for C <= 16
// (the C×C work lives in thread-local arrays); A and B are read candidate-minor (the greedy
// loop stores them so), so a warp's loads are coalesced.
#pragma once
#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>

#include <limits>

#include "trace_ratio_math.h"

namespace fishermask_ext {
namespace cuda_kernels {

constexpr int kThreads = 128;   // 4 warps per block
constexpr int kWarp = 32;
constexpr int kMaxC = 16;       // C up to this is compiled with its own C (local arrays)
constexpr int kFallbackCols = 16;
constexpr int64_t kFallbackBytes = 256ll << 20;   // workspace cap of the C > kMaxC path

// C×C values of one thread: its local array (kC > 0) or its column of a global workspace laid
// out [value][thread], so that a warp's accesses are coalesced (the C > kMaxC fallback).
struct Strided {
  double* p;
  int64_t ld;
  __device__ double& operator[](int q) const { return p[q * ld]; }
};

// The better of two (score, index) candidates: a real index beats -1, a higher score wins,
// equal scores go to the lower index (so -inf candidates still yield the first eligible one).
// Scores are never NaN here (the shared math maps NaN to -inf).
static __device__ inline void keep_better(double& score, int64_t& index, double s, int64_t i) {
  if (i < 0) return;
  if (index < 0 || s > score || (s == score && i < index)) {
    score = s;
    index = i;
  }
}

static __device__ void block_reduce(double* s_score, int64_t* s_index) {
  for (int stride = kThreads / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride)
      keep_better(s_score[threadIdx.x], s_index[threadIdx.x], s_score[threadIdx.x + stride],
                  s_index[threadIdx.x + stride]);
    __syncthreads();
  }
}

// W, Z for the warp's candidates first .. first+31 (those < N): lane k keeps candidate k's.
// For each candidate and row a, the lanes stride over d with one float64 partial sum per column
// of [u v], then a butterfly reduction. UV: [D, 2C] f64 (read through L1/L2: 2C·D values).
template <int kC, typename T, typename M>
__device__ void warp_wz(const T* __restrict__ X, int64_t N, int C, int64_t D,
                        const double* __restrict__ UV, int64_t first, int lane, double scale,
                        M w, M z) {
  constexpr int kCols = kC > 0 ? 2 * kC : kFallbackCols;
  const int cols = 2 * C;
  for (int k = 0; k < kWarp && first + k < N; ++k) {       // uniform across the warp
    const T* xi = X + (first + k) * C * D;
    for (int a = 0; a < C; ++a) {
      for (int c0 = 0; c0 < cols; c0 += kCols) {
        double acc[kCols];
#pragma unroll
        for (int c = 0; c < kCols; ++c) acc[c] = 0.0;
        for (int64_t d = lane; d < D; d += kWarp) {
          const double xv = static_cast<double>(xi[a * D + d]);   // float32 storage, f64 math
          const double* u = UV + d * cols + c0;
#pragma unroll
          for (int c = 0; c < kCols; ++c)
            if (kC > 0 || c0 + c < cols) acc[c] += xv * u[c];
        }
#pragma unroll
        for (int c = 0; c < kCols; ++c) {
          double v = acc[c];
          for (int off = kWarp / 2; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
          const int col = c0 + c;
          if (lane == k && col < cols) {
            if (col < C) w[a * C + col] = scale * v;
            else z[a * C + col - C] = scale * v;
          }
        }
      }
    }
  }
}

// One greedy step: A, B [N, C, C] (strides s0, s1, s2); X [N, C, D]; UV [D, 2C] f64 or null;
// scores [N]; block_score / block_index [gridDim.x]; done: zeroed counter; best [].
// The grid strides over the candidates (at most gridDim.x · kThreads at a time); ws is the
// fallback's workspace, [5·C·C + C, gridDim.x · kThreads] f64 (null when kC > 0).
template <typename T, int kC>
__global__ void __launch_bounds__(kThreads)
trace_ratio_step_kernel(int64_t N, int C_rt, int64_t D, const T* __restrict__ X,
                        const double* __restrict__ UV, double scale, double* A, double* B,
                        int64_t s0, int64_t s1, int64_t s2, const double* S, const double* Q,
                        const bool* eligible, double sigma, bool round_scores, double* ws,
                        double* scores, double* block_score, int64_t* block_index,
                        unsigned int* done, int64_t* best) {
  __shared__ double s_score[kThreads];
  __shared__ int64_t s_index[kThreads];
  __shared__ bool is_last;
  const int C = dim<kC>(C_rt);
  const int CC = C * C;
  const double neg_inf = -std::numeric_limits<double>::infinity();
  const int lane = threadIdx.x % kWarp;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  constexpr int kCC = kC > 0 ? kC * kC : 1;
  double la[kCC], lb[kCC], lw[kCC], lz[kCC], lt[kCC], ld[kC > 0 ? kC : 1];
  double my_score = neg_inf;
  int64_t my_index = -1;
  for (int64_t first = tid - lane; first < N; first += stride) {   // warp-uniform loop
    const int64_t i = first + lane;
    auto run = [&](auto a, auto b, auto w, auto z, auto t, auto inv_diag) {
      if (UV != nullptr) warp_wz<kC>(X, N, C, D, UV, first, lane, scale, w, z);
      if (i >= N) return;
      for (int r = 0; r < C; ++r)
        for (int c = 0; c < C; ++c) {
          a[r * C + c] = A[i * s0 + r * s1 + c * s2];
          b[r * C + c] = B[i * s0 + r * s1 + c * s2];
        }
      if (UV != nullptr) {
        commit_update<kC, double>(C, a, b, w, z, t, S, Q);
        for (int r = 0; r < C; ++r)
          for (int c = 0; c < C; ++c) {
            A[i * s0 + r * s1 + c * s2] = a[r * C + c];
            B[i * s0 + r * s1 + c * s2] = b[r * C + c];
          }
      }
      double s = trace_ratio_score<kC, double>(C, a, b, sigma, w, z, t, inv_diag);
      if (round_scores) s = static_cast<double>(static_cast<float>(s));   // parity mode
      s = eligible[i] ? s : neg_inf;
      scores[i] = s;
      if (eligible[i]) keep_better(my_score, my_index, s, i);
    };
    if constexpr (kC > 0) {
      run(la, lb, lw, lz, lt, ld);
    } else {
      double* base = ws + tid;
      run(Strided{base, stride}, Strided{base + CC * stride, stride},
          Strided{base + 2 * CC * stride, stride}, Strided{base + 3 * CC * stride, stride},
          Strided{base + 4 * CC * stride, stride}, Strided{base + 5 * CC * stride, stride});
    }
  }
  s_score[threadIdx.x] = my_score;
  s_index[threadIdx.x] = my_index;
  __syncthreads();
  block_reduce(s_score, s_index);
  if (threadIdx.x == 0) {
    block_score[blockIdx.x] = s_score[0];
    block_index[blockIdx.x] = s_index[0];
    __threadfence();
    is_last = atomicAdd(done, 1u) == gridDim.x - 1;
  }
  __syncthreads();
  if (!is_last) return;
  double score = neg_inf;
  int64_t index = -1;
  for (unsigned int b = threadIdx.x; b < gridDim.x; b += kThreads)
    keep_better(score, index, __ldcg(block_score + b),
                static_cast<int64_t>(__ldcg(reinterpret_cast<const long long*>(block_index) + b)));
  s_score[threadIdx.x] = score;
  s_index[threadIdx.x] = index;
  __syncthreads();
  block_reduce(s_score, s_index);
  if (threadIdx.x == 0) *best = s_index[0];
}

template <typename T, int kC>
void launch(int64_t blocks, const at::Tensor& X, const c10::optional<at::Tensor>& UV,
            double scale, at::Tensor& A, at::Tensor& B, const at::Tensor& S, const at::Tensor& Q,
            const at::Tensor& eligible, double sigma, bool round_scores, double* ws,
            at::Tensor& scores, at::Tensor& block_score, at::Tensor& block_index,
            at::Tensor& done, at::Tensor& best) {
  trace_ratio_step_kernel<T, kC><<<blocks, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      X.size(0), static_cast<int>(X.size(1)), X.size(2), X.const_data_ptr<T>(),
      UV.has_value() ? UV->const_data_ptr<double>() : nullptr, scale, A.data_ptr<double>(),
      B.data_ptr<double>(), A.stride(0), A.stride(1), A.stride(2), S.const_data_ptr<double>(),
      Q.const_data_ptr<double>(), eligible.const_data_ptr<bool>(), sigma, round_scores, ws,
      scores.data_ptr<double>(), block_score.data_ptr<double>(),
      block_index.data_ptr<int64_t>(), reinterpret_cast<unsigned int*>(done.data_ptr<int>()),
      best.data_ptr<int64_t>());
}

// The kernel for X's dtype and this C: one compiled per C up to kMaxC, the workspace one above.
template <typename T, int kC = 1>
void dispatch_c(int64_t C, int64_t blocks, double* ws, const at::Tensor& X,
                const c10::optional<at::Tensor>& UV, double scale, at::Tensor& A, at::Tensor& B,
                const at::Tensor& S, const at::Tensor& Q, const at::Tensor& eligible,
                double sigma, bool round_scores, at::Tensor& scores, at::Tensor& bs,
                at::Tensor& bi, at::Tensor& done, at::Tensor& best) {
  if constexpr (kC <= kMaxC) {
    if (C == kC) {
      launch<T, kC>(blocks, X, UV, scale, A, B, S, Q, eligible, sigma, round_scores, nullptr,
                    scores, bs, bi, done, best);
      return;
    }
    dispatch_c<T, kC + 1>(C, blocks, ws, X, UV, scale, A, B, S, Q, eligible, sigma, round_scores,
                          scores, bs, bi, done, best);
  } else {
    launch<T, 0>(blocks, X, UV, scale, A, B, S, Q, eligible, sigma, round_scores, ws, scores, bs,
                 bi, done, best);
  }
}

}  // namespace cuda_kernels

// The launch for one storage type of X (float32 in trace_ratio_step_f32.cu, float64 in _f64).
void launch_trace_ratio_step_f32(int64_t C, int64_t blocks, double* ws, const at::Tensor& X,
          const c10::optional<at::Tensor>& UV, double scale, at::Tensor& A, at::Tensor& B,
          const at::Tensor& S, const at::Tensor& Q, const at::Tensor& eligible, double sigma,
          bool round_scores, at::Tensor& scores, at::Tensor& block_score,
          at::Tensor& block_index, at::Tensor& done, at::Tensor& best);
void launch_trace_ratio_step_f64(int64_t C, int64_t blocks, double* ws, const at::Tensor& X,
          const c10::optional<at::Tensor>& UV, double scale, at::Tensor& A, at::Tensor& B,
          const at::Tensor& S, const at::Tensor& Q, const at::Tensor& eligible, double sigma,
          bool round_scores, at::Tensor& scores, at::Tensor& block_score,
          at::Tensor& block_index, at::Tensor& done, at::Tensor& best);

}  // namespace fishermask_ext
