// Host-side preparation and index math of the step-C embedding ops, shared by
// csrc/cpu/masked_grad_cpu.cpp and csrc/cuda/masked_grad_cuda.cu so both devices validate and decode the
// masked entries in one way. Math and shapes: csrc/ops.cpp.
#pragma once
#include <ATen/ATen.h>
#include <c10/macros/Macros.h>

#include "checks.h"

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

// Sizes of a masked_conv2d_grad call; Ig = Cin / groups and Og = O / groups per group.
struct ConvGeometry {
  int64_t n, Cin, H, W, C, O, Ho, Wo, m, kh, kw, sh, sw, ph, pw, dh, dw, Ig, Og;
};

// masked_conv2d_grad, checked and made contiguous.
struct ConvProblem {
  at::Tensor x, delta, index;  // [n, Cin, H, W], [C, n, O, Ho, Wo], [m] int64
  ConvGeometry g;
};

inline ConvProblem prepare_masked_conv2d_grad(const at::Tensor& x,      // [n, Cin, H, W]
                                              const at::Tensor& delta,  // [C, n, O, Ho, Wo]
                                              const at::Tensor& index,  // [m] int64
                                              at::IntArrayRef kernel_size, at::IntArrayRef stride,
                                              at::IntArrayRef padding, at::IntArrayRef dilation,
                                              int64_t groups) {
  check_masked_conv2d_grad(x, delta, index, kernel_size, stride, padding, dilation, groups);
  const ConvGeometry g{x.size(0),      x.size(1),      x.size(2),      x.size(3),
                       delta.size(0),  delta.size(2),  delta.size(3),  delta.size(4),
                       index.size(0),  kernel_size[0], kernel_size[1], stride[0],
                       stride[1],      padding[0],     padding[1],     dilation[0],
                       dilation[1],    x.size(1) / groups, delta.size(2) / groups};
  check_index_range(index, g.O * g.Ig * g.kh * g.kw, "[O, Cin/groups, kh, kw] conv");
  return {x.contiguous(), delta.contiguous(), index.contiguous(), g};
}

// Masked conv entry flat = ((o*Ig + i)*kh + alpha)*kw + beta of the [O, Ig, kh, kw] weight; it
// reads input channel (o / Og)*Ig + i (the channels of o's group). Only for 0 <= flat < O*Ig*kh*kw.
struct ConvEntry {
  int64_t o, channel, alpha, beta;
};

C10_HOST_DEVICE inline ConvEntry decode_conv_entry(int64_t flat, const ConvGeometry& g) {
  const int64_t beta = flat % g.kw, alpha = flat / g.kw % g.kh;
  const int64_t i = flat / (g.kw * g.kh) % g.Ig, o = flat / (g.kw * g.kh * g.Ig);
  return {o, o / g.Og * g.Ig + i, alpha, beta};
}

}  // namespace fishermask_ext
