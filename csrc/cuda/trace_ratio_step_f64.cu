// The trace_ratio_step kernels for double storage of X (see trace_ratio_step_kernel.cuh).
#include "cuda/trace_ratio_step_kernel.cuh"

namespace fishermask_ext {

void launch_trace_ratio_step_f64(int64_t C, int64_t blocks, double* ws, const at::Tensor& X,
          const c10::optional<at::Tensor>& UV, double scale, at::Tensor& A, at::Tensor& B,
          const at::Tensor& S, const at::Tensor& Q, const at::Tensor& eligible, double sigma,
          bool round_scores, at::Tensor& scores, at::Tensor& block_score,
          at::Tensor& block_index, at::Tensor& done, at::Tensor& best) {
  cuda_kernels::dispatch_c<double>(C, blocks, ws, X, UV, scale, A, B, S, Q, eligible, sigma, round_scores,
                         scores, block_score, block_index, done, best);
}

}  // namespace fishermask_ext
