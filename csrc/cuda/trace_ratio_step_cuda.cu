// CUDA kernels of trace_ratio_step and trace_ratio_update (schemas: csrc/ops.cpp): the W/Z
// producer when UV is given, then the update-and-score kernel (trace_ratio_kernels.cuh).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "checks.h"
#include "cuda/trace_ratio_kernels.cuh"

namespace fishermask_ext {
namespace {

// The update (when WZ is given) and the scores of every candidate, as trace_ratio_step returns
// them. WZ: [N, C, 2C] f64 contiguous, unscaled, or null.
std::tuple<at::Tensor, at::Tensor> update_and_score(at::Tensor& A, at::Tensor& B,
                                                    const double* WZ, double scale,
                                                    const at::Tensor& S_, const at::Tensor& Q_,
                                                    const at::Tensor& eligible_, double sigma,
                                                    bool round_scores) {
  const int64_t N = A.size(0), C = A.size(1);
  const auto S = S_.contiguous(), Q = Q_.contiguous(), eligible = eligible_.contiguous();
  auto scores = at::empty({N}, A.options());
  auto best = at::full({}, -1, A.options().dtype(at::kLong));
  if (N == 0) return {scores, best};
  const int64_t blocks = update_blocks(N, static_cast<int>(C));
  at::Tensor ws;
  if (C > cuda_kernels::kMaxC)
    ws = at::empty({blocks * update_groups_per_block(C) * cuda_kernels::tile_doubles(C)},
                   A.options());
  auto block_score = at::empty({blocks}, A.options());
  auto block_index = at::empty({blocks}, best.options());
  auto done = at::zeros({1}, A.options().dtype(at::kInt));
  const cuda_kernels::StepArgs p{
      N, static_cast<int>(C), WZ, scale, A.data_ptr<double>(), B.data_ptr<double>(),
      A.stride(0), A.stride(1), A.stride(2), S.const_data_ptr<double>(),
      Q.const_data_ptr<double>(), eligible.const_data_ptr<bool>(), sigma, round_scores,
      ws.defined() ? ws.data_ptr<double>() : nullptr, scores.data_ptr<double>(),
      block_score.data_ptr<double>(), block_index.data_ptr<int64_t>(),
      reinterpret_cast<unsigned int*>(done.data_ptr<int>()), best.data_ptr<int64_t>()};
  launch_update(p, blocks);
  return {scores, best};
}

std::tuple<at::Tensor, at::Tensor> trace_ratio_step_cuda(
    at::Tensor& A, at::Tensor& B, const at::Tensor& X_, const c10::optional<at::Tensor>& UV_,
    double scale, const at::Tensor& S, const at::Tensor& Q, const at::Tensor& eligible,
    double sigma, bool round_scores) {
  check_trace_ratio_step(A, B, X_, UV_, S, Q, eligible);
  const c10::cuda::CUDAGuard guard(A.device());
  if (!UV_.has_value())
    return update_and_score(A, B, nullptr, scale, S, Q, eligible, sigma, round_scores);
  const int64_t N = A.size(0), C = A.size(1), D = X_.size(2);
  const auto X = X_.contiguous(), UV = UV_->contiguous();
  auto WZ = at::empty({N, C, 2 * C}, A.options());   // [N, C, 2C]
  if (X.scalar_type() == at::kFloat)
    launch_wz_f32({X.const_data_ptr<float>(), UV.const_data_ptr<double>(), WZ.data_ptr<double>(),
                   N * C, D, static_cast<int>(2 * C)}, static_cast<int>(C));
  else
    launch_wz_f64({X.const_data_ptr<double>(), UV.const_data_ptr<double>(), WZ.data_ptr<double>(),
                   N * C, D, static_cast<int>(2 * C)}, static_cast<int>(C));
  return update_and_score(A, B, WZ.const_data_ptr<double>(), scale, S, Q, eligible, sigma,
                          round_scores);
}

std::tuple<at::Tensor, at::Tensor> trace_ratio_update_cuda(
    at::Tensor& A, at::Tensor& B, const at::Tensor& WZ_, double scale, const at::Tensor& S,
    const at::Tensor& Q, const at::Tensor& eligible, double sigma, bool round_scores) {
  check_trace_ratio_update(A, B, WZ_, S, Q, eligible);
  const c10::cuda::CUDAGuard guard(A.device());
  if (WZ_.size(2) == 0)      // [N, C, 0]: no update, scores only (the first step)
    return update_and_score(A, B, nullptr, scale, S, Q, eligible, sigma, round_scores);
  const auto WZ = WZ_.contiguous();
  return update_and_score(A, B, WZ.const_data_ptr<double>(), scale, S, Q, eligible, sigma,
                          round_scores);
}

}  // namespace

TORCH_LIBRARY_IMPL(fishermask_ext, CUDA, m) {
  m.impl("trace_ratio_step", &trace_ratio_step_cuda);
  m.impl("trace_ratio_update", &trace_ratio_update_cuda);
}

}  // namespace fishermask_ext
