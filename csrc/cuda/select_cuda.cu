// CUDA kernels of the greedy selection: W, Z = X̃·[u v] by one cuBLAS GEMM (through ATen), then
// one launch for all candidates: update A_i, B_i, factor, score, mask and the argmax (the last
// block to finish reduces the per-block winners). Also registers the greedy loop for CUDA.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "checks.h"
#include "select.h"
#include "trace_ratio.h"

namespace fishermask_ext {
namespace {

constexpr int kThreads = 128;

// The better of two (score, index) candidates: a real index beats -1, a higher score wins,
// equal scores go to the lower index (so -inf candidates still yield the first eligible one).
__device__ inline void keep_better(double& score, int64_t& index, double s, int64_t i) {
  if (i < 0) return;
  if (index < 0 || s > score || (s == score && i < index)) {
    score = s;
    index = i;
  }
}

__device__ void block_reduce(double* s_score, int64_t* s_index) {
  for (int stride = kThreads / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride)
      keep_better(s_score[threadIdx.x], s_index[threadIdx.x], s_score[threadIdx.x + stride],
                  s_index[threadIdx.x + stride]);
    __syncthreads();
  }
}

// One thread per candidate i: A, B [N, C, C]; WZ [N, C, 2C] (or null: score only);
// scratch [N, 5·C·C]; block_score / block_index [gridDim.x]; done: zeroed counter; best [].
template <typename T>
__global__ void trace_ratio_step_kernel(int64_t N, int C, const T* __restrict__ WZ, double scale,
                                        double* A, double* B, const double* S, const double* Q,
                                        const bool* eligible, double sigma,
                                        bool round_scores, double* scratch,
                                        double* scores, double* block_score, int64_t* block_index,
                                        unsigned int* done, int64_t* best) {
  __shared__ double s_score[kThreads];
  __shared__ int64_t s_index[kThreads];
  __shared__ bool is_last;
  const double neg_inf = -std::numeric_limits<double>::infinity();
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  s_score[threadIdx.x] = neg_inf;
  s_index[threadIdx.x] = -1;
  if (i < N) {
    const int64_t CC = static_cast<int64_t>(C) * C;
    double* work = scratch + i * 5 * CC;
    double* W = work + 3 * CC;
    double* Z = work + 4 * CC;
    if (WZ != nullptr) {
      const T* wz = WZ + i * 2 * CC;
      for (int a = 0; a < C; ++a)
        for (int c = 0; c < C; ++c) {
          W[a * C + c] = scale * static_cast<double>(wz[a * 2 * C + c]);
          Z[a * C + c] = scale * static_cast<double>(wz[a * 2 * C + C + c]);
        }
    }
    double s = candidate_step(C, A + i * CC, B + i * CC, WZ != nullptr ? W : nullptr, Z, S, Q,
                              sigma, work);
    if (round_scores) s = static_cast<double>(static_cast<float>(s));   // parity mode
    scores[i] = eligible[i] ? s : neg_inf;
    if (eligible[i]) {
      s_score[threadIdx.x] = s;
      s_index[threadIdx.x] = i;
    }
  }
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

std::tuple<at::Tensor, at::Tensor> trace_ratio_step_cuda(
    at::Tensor& A, at::Tensor& B, const at::Tensor& X, const c10::optional<at::Tensor>& UV,
    double scale, const at::Tensor& S_, const at::Tensor& Q_, const at::Tensor& eligible_,
    double sigma, bool round_scores) {
  check_trace_ratio_step(A, B, X, UV, S_, Q_, eligible_);
  const c10::cuda::CUDAGuard guard(A.device());
  const int64_t N = A.size(0), C = A.size(1), D = X.size(2);
  const auto S = S_.contiguous(), Q = Q_.contiguous(), eligible = eligible_.contiguous();
  auto scores = at::empty({N}, A.options());
  auto best = at::full({}, -1, A.options().dtype(at::kLong));
  if (N == 0) return {scores, best};
  const at::Tensor WZ = UV.has_value() ? at::matmul(X.reshape({N * C, D}), *UV).contiguous()
                                       : at::Tensor();                       // [N·C, 2C]
  const int64_t blocks = (N + kThreads - 1) / kThreads;
  auto scratch = at::empty({N, 5 * C * C}, A.options());
  auto block_score = at::empty({blocks}, A.options());
  auto block_index = at::empty({blocks}, best.options());
  auto done = at::zeros({1}, A.options().dtype(at::kInt));
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(X.scalar_type(), "trace_ratio_step_cuda", [&] {
    trace_ratio_step_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(
        N, static_cast<int>(C), WZ.defined() ? WZ.const_data_ptr<scalar_t>() : nullptr, scale,
        A.data_ptr<double>(), B.data_ptr<double>(), S.const_data_ptr<double>(),
        Q.const_data_ptr<double>(), eligible.const_data_ptr<bool>(), sigma, round_scores,
        scratch.data_ptr<double>(), scores.data_ptr<double>(), block_score.data_ptr<double>(),
        block_index.data_ptr<int64_t>(), reinterpret_cast<unsigned int*>(done.data_ptr<int>()),
        best.data_ptr<int64_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {scores, best};
}

}  // namespace

TORCH_LIBRARY_IMPL(fishermask_ext, CUDA, m) {
  m.impl("trace_ratio_step", &trace_ratio_step_cuda);
  m.impl("greedy_select", &greedy_select);
}

}  // namespace fishermask_ext
