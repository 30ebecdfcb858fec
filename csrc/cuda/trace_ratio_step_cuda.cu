// CUDA kernel of trace_ratio_step (the op; the kernel itself is in trace_ratio_step_kernel.cuh,
// compiled per storage type in trace_ratio_step_f32.cu and trace_ratio_step_f64.cu).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "checks.h"
#include "cuda/trace_ratio_step_kernel.cuh"

namespace fishermask_ext {
namespace {

std::tuple<at::Tensor, at::Tensor> trace_ratio_step_cuda(
    at::Tensor& A, at::Tensor& B, const at::Tensor& X_, const c10::optional<at::Tensor>& UV_,
    double scale, const at::Tensor& S_, const at::Tensor& Q_, const at::Tensor& eligible_,
    double sigma, bool round_scores) {
  check_trace_ratio_step(A, B, X_, UV_, S_, Q_, eligible_);
  const c10::cuda::CUDAGuard guard(A.device());
  const int64_t N = A.size(0), C = A.size(1);
  const auto X = X_.contiguous();
  const auto S = S_.contiguous(), Q = Q_.contiguous(), eligible = eligible_.contiguous();
  const c10::optional<at::Tensor> UV =
      UV_.has_value() ? c10::optional<at::Tensor>(UV_->contiguous()) : c10::nullopt;
  auto scores = at::empty({N}, A.options());
  auto best = at::full({}, -1, A.options().dtype(at::kLong));
  if (N == 0) return {scores, best};
  int64_t blocks = (N + cuda_kernels::kThreads - 1) / cuda_kernels::kThreads;
  at::Tensor ws;
  if (C > cuda_kernels::kMaxC) {   // a bounded workspace: fewer threads, each striding further
    const int64_t per_thread = (5 * C * C + C) * static_cast<int64_t>(sizeof(double));
    const int64_t fit = cuda_kernels::kFallbackBytes / (per_thread * cuda_kernels::kThreads);
    blocks = std::max<int64_t>(1, std::min(blocks, fit));
    ws = at::empty({(5 * C * C + C) * blocks * cuda_kernels::kThreads}, A.options());
  }
  auto block_score = at::empty({blocks}, A.options());
  auto block_index = at::empty({blocks}, best.options());
  auto done = at::zeros({1}, A.options().dtype(at::kInt));
  double* wsp = ws.defined() ? ws.data_ptr<double>() : nullptr;
  const auto launch = X.scalar_type() == at::kFloat ? &launch_trace_ratio_step_f32
                                                     : &launch_trace_ratio_step_f64;
  launch(C, blocks, wsp, X, UV, scale, A, B, S, Q, eligible, sigma, round_scores, scores,
         block_score, block_index, done, best);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {scores, best};
}

}  // namespace

TORCH_LIBRARY_IMPL(fishermask_ext, CUDA, m) {
  m.impl("trace_ratio_step", &trace_ratio_step_cuda);
}

}  // namespace fishermask_ext
