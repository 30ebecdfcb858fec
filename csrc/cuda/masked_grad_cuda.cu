// CUDA kernels of the step-C embedding ops (docs/ALGORITHM.md): per-sample masked weight gradients of
// Linear and Conv2d layers for all C class seeds at once. Schemas and exact math: csrc/ops.cpp;
// validation and index decoding are shared with the CPU kernels through csrc/masked_grad.h.
// Linear: one thread per (sample, masked entry) pair (the sum over S is short, usually S = 1).
// Conv2d: a segment of lanes per pair (a whole warp from 32 output positions up), the lanes
// split the Ho·Wo output positions and reduce by shuffles.
// Both keep kClassTile class sums in registers, so an activation is read once per tile of classes
// (once in all for C <= kClassTile).
#include <ATen/ATen.h>
#include <ATen/AccumulateType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>

#include "cuda/warp_sum.cuh"
#include "masked_grad.h"

namespace fishermask_ext {
namespace {

constexpr int kClassTile = 16;
constexpr int kThreads = 256;               // linear kernel block
constexpr int kWarps = 8;                   // conv kernel block: kWarps warps of 32 lanes
constexpr int64_t kMaxBlocks = 1 << 20;     // grid-stride loops cover the rest

int blocks_for(int64_t items, int64_t per_block) {
  return static_cast<int>(std::min((items + per_block - 1) / per_block, kMaxBlocks));
}

template <typename scalar_t>
__global__ void masked_linear_grad_kernel(const scalar_t* __restrict__ a,      // [n, S, I]
                                          const scalar_t* __restrict__ delta,  // [C, n, S, O]
                                          const int64_t* __restrict__ index,   // [m]
                                          scalar_t* __restrict__ out,          // [n, C, m]
                                          int64_t n, int64_t S, int64_t I, int64_t C, int64_t O,
                                          int64_t m) {
  using acc_t = at::acc_type<scalar_t, /*is_cuda=*/false>;   // float64, as on the CPU
  const int64_t class_stride = n * S * O;
  // k varies fastest across threads: neighbours share the sample (and often o).
  for (int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; p < n * m;
       p += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t s = p / m, k = p % m;
    const int64_t o = index[k] / I, i = index[k] % I;
    for (int64_t c0 = 0; c0 < C; c0 += kClassTile) {
      acc_t acc[kClassTile];
#pragma unroll
      for (int j = 0; j < kClassTile; ++j) acc[j] = acc_t(0);
      for (int64_t t = 0; t < S; ++t) {
        const acc_t av = a[(s * S + t) * I + i];
        const scalar_t* d = delta + c0 * class_stride + (s * S + t) * O + o;
#pragma unroll
        for (int j = 0; j < kClassTile; ++j)
          if (c0 + j < C) acc[j] += static_cast<acc_t>(d[j * class_stride]) * av;
      }
#pragma unroll
      for (int j = 0; j < kClassTile; ++j)
        if (c0 + j < C) out[(s * C + c0 + j) * m + k] = static_cast<scalar_t>(acc[j]);
    }
  }
}

// blockDim = (32, kWarps). A warp handles 32 / width (sample, masked entry) pairs at once, one
// per segment of `width` lanes (segment_width(L)): a segment's lanes split the L = Ho·Wo output
// positions and reduce by shuffles, so a map of fewer than 32 positions still uses every lane.
// Two blocks per SM: without the bound ptxas takes 156-162 registers (one block of 8 warps per
// SM); with it 123-127 and no spills, as before the lanes were split into segments.
template <typename scalar_t>
__global__ void __launch_bounds__(kWarps * 32, 2)
    masked_conv2d_grad_kernel(const scalar_t* __restrict__ x,      // [n, Cin, H, W]
                              const scalar_t* __restrict__ delta,  // [C, n, O, Ho, Wo]
                              const int64_t* __restrict__ index,   // [m]
                              scalar_t* __restrict__ out,          // [n, C, m]
                              ConvGeometry g, int64_t m, int width) {
  using acc_t = at::acc_type<scalar_t, /*is_cuda=*/false>;   // float64, as on the CPU
  const int lane = threadIdx.x, sub = lane % width;
  const int64_t per_warp = 32 / width, pairs = g.n * m, class_stride = g.n * g.O * g.L;
  // p0 is uniform across a warp, so every lane reaches the shuffles together; a segment past
  // the last pair sums no positions and stores nothing.
  for (int64_t p0 = (blockIdx.x * static_cast<int64_t>(blockDim.y) + threadIdx.y) * per_warp;
       p0 < pairs; p0 += static_cast<int64_t>(gridDim.x) * blockDim.y * per_warp) {
    const int64_t p = p0 + lane / width;
    const bool valid = p < pairs;
    const int64_t s = valid ? p / m : 0, k = valid ? p % m : 0, L = valid ? g.L : 0;
    const ConvEntry e = decode_conv_entry(valid ? index[k] : 0, g);
    const scalar_t* xs = x + (s * g.Cin + e.tap.plane) * g.H * g.W;
    const scalar_t* ds = delta + (s * g.O + e.o) * g.L;
    for (int64_t c0 = 0; c0 < g.C; c0 += kClassTile) {
      acc_t acc[kClassTile];
#pragma unroll
      for (int j = 0; j < kClassTile; ++j) acc[j] = acc_t(0);
      for (int64_t l = sub; l < L; l += width) {
        const int64_t y = l / g.Wo, xo = l % g.Wo;
        const int64_t iy = y * g.sh + e.tap.y0, ix = xo * g.sw + e.tap.x0;
        if (iy < 0 || iy >= g.H || ix < 0 || ix >= g.W) continue;  // implicit zero padding
        const acc_t xv = xs[iy * g.W + ix];
        const scalar_t* d = ds + c0 * class_stride + l;
#pragma unroll
        for (int j = 0; j < kClassTile; ++j)
          if (c0 + j < g.C) acc[j] += static_cast<acc_t>(d[j * class_stride]) * xv;
      }
#pragma unroll
      for (int j = 0; j < kClassTile; ++j) {
        if (c0 + j >= g.C) break;  // uniform across the warp: no lane skips a shuffle
        const acc_t total = segment_sum(acc[j], width);
        if (valid && sub == 0) out[(s * g.C + c0 + j) * m + k] = static_cast<scalar_t>(total);
      }
    }
  }
}

at::Tensor masked_linear_grad_cuda(const at::Tensor& a,      // [n, S, I]
                                   const at::Tensor& delta,  // [C, n, S, O]
                                   const at::Tensor& index   // [m] int64
) {
  const c10::cuda::CUDAGuard guard(a.device());
  const LinearProblem p = prepare_masked_linear_grad(a, delta, index);
  at::Tensor out = at::empty({p.n, p.C, p.m}, p.a.options());  // [n, C, m]
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(p.a.scalar_type(), "masked_linear_grad_cuda", [&] {
    masked_linear_grad_kernel<scalar_t>
        <<<blocks_for(p.n * p.m, kThreads), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
            p.a.data_ptr<scalar_t>(), p.delta.data_ptr<scalar_t>(), p.index.data_ptr<int64_t>(),
            out.data_ptr<scalar_t>(), p.n, p.S, p.I, p.C, p.O, p.m);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor masked_conv2d_grad_cuda(const at::Tensor& x,      // [n, Cin, H, W]
                                   const at::Tensor& delta,  // [C, n, O, Ho, Wo]
                                   const at::Tensor& index,  // [m] int64
                                   at::IntArrayRef kernel_size, at::IntArrayRef stride,
                                   at::IntArrayRef padding, at::IntArrayRef dilation,
                                   int64_t groups) {
  const c10::cuda::CUDAGuard guard(x.device());
  const ConvProblem p = prepare_masked_conv2d_grad(x, delta, index, kernel_size, stride, padding,
                                                   dilation, groups);
  at::Tensor out = at::empty({p.g.n, p.g.C, p.m}, p.x.options());  // [n, C, m]
  if (out.numel() == 0) return out;
  const int width = segment_width(p.g.L);
  AT_DISPATCH_FLOATING_TYPES(p.x.scalar_type(), "masked_conv2d_grad_cuda", [&] {
    masked_conv2d_grad_kernel<scalar_t>
        <<<blocks_for(p.g.n * p.m, kWarps * (32 / width)), dim3(32, kWarps), 0,
           c10::cuda::getCurrentCUDAStream()>>>(p.x.data_ptr<scalar_t>(),
                                                p.delta.data_ptr<scalar_t>(),
                                                p.index.data_ptr<int64_t>(),
                                                out.data_ptr<scalar_t>(), p.g, p.m, width);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fishermask_ext, CUDA, m) {
  m.impl("masked_linear_grad", &masked_linear_grad_cuda);
  m.impl("masked_conv2d_grad", &masked_conv2d_grad_cuda);
}

}  // namespace fishermask_ext
