// The greedy loop of step E, written once over ATen ops and the trace_ratio_step op, so it runs
// on every device that has a trace_ratio_step kernel. csrc/cpu and csrc/cuda register it.
#pragma once
#include <ATen/ATen.h>

namespace fishermask_ext {

// X: [N, C, D] f32/f64; P0, F: [D, D] f64 -> [budget] int64 positions in pick order.
at::Tensor greedy_select(const at::Tensor& X, const at::Tensor& P0, const at::Tensor& F,
                         double scale, int64_t budget, int64_t n_forward, int64_t chunk,
                         bool round_scores);

// One commit of the greedy loop on the CPU, in three streaming passes over the D×D matrices:
// u = P x̃ᵀ, v = P (F u), then P -= u S uᵀ (fused with the pass that forms v). P, F: [D, D] f64
// contiguous, symmetric; xt: [C, D] f64 (the scaled embedding of the pick); S: [C, C] f64
// symmetric. Updates P in place; returns [u v] as [D, 2C] f64.
at::Tensor commit_direction_cpu(at::Tensor& P, const at::Tensor& F, const at::Tensor& xt,
                                const at::Tensor& S);

}  // namespace fishermask_ext
