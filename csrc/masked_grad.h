// Host-side preparation and index math of the step-C embedding ops, shared by
// csrc/cpu/masked_grad_cpu.cpp and csrc/cuda/masked_grad_cuda.cu so both devices validate and decode the
// masked entries in one way. Math and shapes: csrc/ops.cpp.
#pragma once
#include <ATen/ATen.h>
#include <c10/macros/Macros.h>

#include "checks.h"
#include "conv_geometry.h"

namespace fishermask_ext {

// The kernels index activations through `index`, so an entry outside the weight would read out
// of bounds: reject it before any work. On CUDA the .item() calls synchronise once per op call.
inline void check_index_range(const at::Tensor& index, int64_t bound, const char* weight) {
  if (index.numel() == 0) return;
  const auto [lo, hi] = at::aminmax(index);
  const int64_t lo_v = lo.item<int64_t>(), hi_v = hi.item<int64_t>();
  TORCH_CHECK(lo_v >= 0 && hi_v < bound, "index entries must be flat positions in [0, ", bound,
              ") of the ", weight, " weight, got values in [", lo_v, ", ", hi_v, "]");
}

// masked_linear_grad, checked and made contiguous.
struct LinearProblem {
  at::Tensor a, delta, index;  // [n, S, I], [C, n, S, O], [m] int64
  int64_t n, S, I, C, O, m;
};

inline LinearProblem prepare_masked_linear_grad(const at::Tensor& a,      // [n, S, I]
                                                const at::Tensor& delta,  // [C, n, S, O]
                                                const at::Tensor& index   // [m] int64
) {
  check_masked_linear_grad(a, delta, index);
  LinearProblem p{a.contiguous(), delta.contiguous(), index.contiguous(),
                  a.size(0),      a.size(1),          a.size(2),
                  delta.size(0),  delta.size(3),      index.size(0)};
  check_index_range(p.index, p.O * p.I, "[O, I] linear");
  return p;
}

// masked_conv2d_grad, checked and made contiguous.
struct ConvProblem {
  at::Tensor x, delta, index;  // [n, Cin, H, W], [C, n, O, Ho, Wo], [m] int64
  ConvGeometry g;
  int64_t m;
};

inline ConvProblem prepare_masked_conv2d_grad(const at::Tensor& x,      // [n, Cin, H, W]
                                              const at::Tensor& delta,  // [C, n, O, Ho, Wo]
                                              const at::Tensor& index,  // [m] int64
                                              at::IntArrayRef kernel_size, at::IntArrayRef stride,
                                              at::IntArrayRef padding, at::IntArrayRef dilation,
                                              int64_t groups) {
  check_masked_conv2d_grad(x, delta, index, kernel_size, stride, padding, dilation, groups);
  const ConvGeometry g = conv_geometry(x, delta, kernel_size, stride, padding, dilation, groups);
  check_index_range(index, g.O * g.K, "[O, Cin/groups, kh, kw] conv");
  return {x.contiguous(), delta.contiguous(), index.contiguous(), g, index.size(0)};
}

}  // namespace fishermask_ext
