// The greedy loop of step E, written once over ATen ops and the trace_ratio_step op, so it runs
// on every device that has a trace_ratio_step kernel. csrc/cpu and csrc/cuda register it.
#pragma once
#include <ATen/ATen.h>

namespace fishermask_ext {

// X: [N, C, D] f32/f64; P0, F: [D, D] f64 -> [budget] int64 positions in pick order.
at::Tensor greedy_select(const at::Tensor& X, const at::Tensor& P0, const at::Tensor& F,
                         double scale, int64_t budget, int64_t n_forward, int64_t chunk);

}  // namespace fishermask_ext
