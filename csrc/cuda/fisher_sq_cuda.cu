// CUDA kernels of the step-A ops (docs/ALGORITHM.md): sums over samples and class seeds of
// squared per-sample gradients, summed in float64 as on the CPU. Schemas and exact math: csrc/ops.cpp; the chunk loops (cuBLAS
// batched GEMMs through ATen) and the arithmetic are csrc/fisher_sq.h, shared with the CPU.
// Conv2d weights: ConvSquaresCuda is the per-chunk work of the shared fisher_conv2d_sq_impl.
// im2col: one thread per patch entry. square_sum: one thread per gradient entry, its loads coalesced across the warp.
// channel: lanes over (output channel, position) of each (class, sample) row, coalesced; blocks
// over (channel group, slice of the rows); fixed-order sums (deterministic, no atomics).
#include <ATen/ATen.h>
#include <ATen/AccumulateType.h>
#include <ATen/Context.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>

#include "cuda/warp_sum.cuh"
#include "fisher_sq.h"

namespace fishermask_ext {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;    // channel kernel block
constexpr int kRowsPerWarp = 4;          // channel kernel: (class, sample) rows per warp at least
constexpr int64_t kMaxBlocks = 1 << 20;  // grid-stride loops cover the rest

template <typename scalar_t>
__global__ void square_sum_kernel(const scalar_t* __restrict__ G,  // [P, Gr, C, R]
                                  scalar_t* __restrict__ out,      // [Gr, R]
                                  int64_t P, int64_t Gr, int64_t C, int64_t R) {
  using acc_t = at::acc_type<scalar_t, /*is_cuda=*/false>;   // float64, as on the CPU
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < Gr * R;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t g = t / R, r = t % R;
    acc_t acc = 0;
    for (int64_t p = 0; p < P; ++p)
      for (int64_t c = 0; c < C; ++c) acc += squared<acc_t>(G[gradient_row(p, g, c, Gr, C, R) + r]);
    out[t] = static_cast<scalar_t>(out[t] + acc);
  }
}

void square_sum_cuda(const at::Tensor& G, const at::Tensor& out) {
  const int64_t P = G.size(0), Gr = G.size(1), C = G.size(2), R = G.size(3);
  if (Gr * R == 0) return;
  const int blocks = static_cast<int>(std::min((Gr * R + kThreads - 1) / kThreads, kMaxBlocks));
  AT_DISPATCH_FLOATING_TYPES(G.scalar_type(), "square_sum_cuda", [&] {
    square_sum_kernel<scalar_t><<<blocks, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        G.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), P, Gr, C, R);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

template <typename scalar_t>
__global__ void im2col_kernel(const scalar_t* __restrict__ x,  // [P, Cin, H, W]
                              scalar_t* __restrict__ out,      // [P, Cin·kh·kw, Ho·Wo]
                              int64_t total, ConvGeometry g) {
  const int64_t L = g.Ho * g.Wo;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = t / L, l = t % L;
    const PatchRow row = patch_row(r, g);
    out[t] = patch_at(x + row.plane * g.H * g.W, row, l / g.Wo, l % g.Wo, g);
  }
}

void im2col_cuda(const at::Tensor& x, const ConvGeometry& g, const at::Tensor& patches) {
  const int64_t total = patches.numel();
  if (total == 0) return;
  const int blocks = static_cast<int>(std::min((total + kThreads - 1) / kThreads, kMaxBlocks));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "im2col_cuda", [&] {
    im2col_kernel<scalar_t><<<blocks, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        x.data_ptr<scalar_t>(), patches.data_ptr<scalar_t>(), total, g);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

// A chunk of fisher_conv2d_sq (fisher_conv2d_sq_impl's Squares) on CUDA: im2col, every
// class's per-sample gradients by one batched GEMM (cuBLAS, almost all the FLOPs), then
// square_sum folds their squares into the sum.
class ConvSquaresCuda {
 public:
  ConvSquaresCuda(const ConvGeometry& g, const at::Tensor& delta, int64_t most)  // [C, n, O, Ho, Wo]
      : g_(g),
        delta_(delta),
        out_(at::zeros({g.O, g.K}, delta.options())),
        // One buffer each for a chunk's patches and gradients, reused: fresh chunk-sized
        // tensors would cost page faults on every chunk (the allocator returns large blocks).
        patch_buf_(at::empty({most * g.groups * g.K * g.L}, delta.options())),
        grad_buf_(at::empty({most * g.groups * g.C * g.Og * g.K}, delta.options())) {}

  void add(const at::Tensor& x, int64_t s) {  // [P, Cin, H, W] contiguous: samples s .. s + P
    const int64_t P = x.size(0), G = g_.groups, C = g_.C, Og = g_.Og, K = g_.K, L = g_.L;
    const at::Tensor patches = patch_buf_.narrow(0, 0, P * G * K * L).view({P, G * K, L});
    im2col_cuda(x, g_, patches);
    // Classes join the rows of each sample's product, so its patches are read once for all C.
    // With step A's sample-major delta ([n, C, O, L] memory) and groups == 1 this is a view.
    const at::Tensor d = delta_.narrow(1, s, P)
                             .reshape({C, P, G, Og, L})
                             .permute({1, 2, 0, 3, 4})
                             .reshape({P * G, C * Og, L});
    at::Tensor grads = grad_buf_.narrow(0, 0, P * G * C * Og * K).view({P * G, C * Og, K});
    at::bmm_out(grads, d, patches.view({P * G, K, L}).transpose(1, 2));
    square_sum_cuda(grads.view({P, G, C, Og * K}), out_.view({G, Og * K}));
  }

  at::Tensor result() const { return out_; }  // [O, K]

 private:
  ConvGeometry g_;
  at::Tensor delta_, out_, patch_buf_, grad_buf_;
};

// fisher_channel_sq's partial sums, partial [O, parts] float64: block b holds output channels
// [o0, o0 + 32 / width) (o0 = b / parts · 32 / width) and slice b % parts of the C·n (class,
// sample) rows. Its warps take the slice's rows in turn; in a row's contiguous [O, L] block,
// the segment of `width` lanes (segment_width(L)) of output channel o reads o's positions
// l = sub, sub + width, ... (neighbouring lanes, neighbouring addresses), sums them by
// shuffles and squares the sum. The warps' sums meet in shared memory in a fixed order:
// deterministic, no atomics.
template <typename scalar_t>
__global__ void channel_sq_kernel(const scalar_t* __restrict__ delta,  // [C, n, O, L]
                                  int64_t sc, int64_t sn,              // its strides over C, n
                                  const scalar_t* __restrict__ a,      // [n, O, L] or null
                                  double* __restrict__ partial,        // [O, parts]
                                  int64_t C, int64_t n, int64_t O, int64_t L, int width,
                                  int64_t parts) {
  using acc_t = at::acc_type<scalar_t, /*is_cuda=*/false>;   // float64, as on the CPU
  __shared__ acc_t warp_sums[kWarps][32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, sub = lane % width;
  const int64_t part = blockIdx.x % parts;
  const int64_t o = blockIdx.x / parts * (32 / width) + lane / width;
  const int64_t len = o < O ? L : 0;   // lanes past the last channel sum nothing
  acc_t total = 0;
  // q is uniform across a warp, so every lane reaches the shuffles together.
  for (int64_t q = part * kWarps + warp; q < C * n; q += parts * kWarps) {
    const int64_t c = q / n, i = q % n;
    const scalar_t* d = delta + c * sc + i * sn + o * L;
    const scalar_t* ai = a == nullptr ? a : a + (i * O + o) * L;
    acc_t v = 0;
    for (int64_t l = sub; l < len; l += width) v += channel_term<acc_t>(d, ai, l);
    v = segment_sum(v, width);
    total += v * v;   // the channel's term in its segment's first lane
  }
  warp_sums[warp][lane] = total;
  __syncthreads();   // every warp's sums are written before warp 0 adds them up
  if (warp == 0 && sub == 0 && o < O) {
    acc_t sum = 0;
    for (int w = 0; w < kWarps; ++w) sum += warp_sums[w][lane];
    partial[o * parts + part] = sum;
  }
}

at::Tensor fisher_linear_sq_cuda(const at::Tensor& a,      // [n, S, I]
                                 const at::Tensor& delta,  // [C, n, S, O]
                                 int64_t chunk) {
  const c10::cuda::CUDAGuard guard(a.device());
  const at::NoTF32Guard no_tf32;   // the float32 products stay float32, whatever the global flag
  return fisher_linear_sq_impl(a, delta, chunk, square_sum_cuda);
}

at::Tensor fisher_conv2d_sq_cuda(const at::Tensor& x,      // [n, Cin, H, W]
                                 const at::Tensor& delta,  // [C, n, O, Ho, Wo]
                                 at::IntArrayRef kernel_size, at::IntArrayRef stride,
                                 at::IntArrayRef padding, at::IntArrayRef dilation,
                                 int64_t groups, int64_t chunk) {
  const c10::cuda::CUDAGuard guard(x.device());
  const at::NoTF32Guard no_tf32;
  return fisher_conv2d_sq_impl<ConvSquaresCuda>(x, delta, kernel_size, stride, padding,
                                                dilation, groups, chunk);
}

at::Tensor fisher_channel_sq_cuda(const at::Tensor& delta,               // [C, n, O, L]
                                  const c10::optional<at::Tensor>& a) {  // [n, O, L]
  const c10::cuda::CUDAGuard guard(delta.device());
  const ChannelProblem p = prepare_fisher_channel_sq(delta, a);
  at::Tensor out = at::empty({p.O}, p.delta.options());  // [O]
  if (p.O == 0) return out;
  // Rows split so that every warp walks a few: enough blocks to fill the device when O is small.
  const int width = segment_width(p.L);
  const int64_t groups = (p.O + 32 / width - 1) / (32 / width);
  const int64_t parts = std::max<int64_t>(
      1, std::min((p.C * p.n + kWarps * kRowsPerWarp - 1) / (kWarps * kRowsPerWarp),
                  kMaxBlocks / groups));
  at::Tensor partial = at::empty({p.O, parts}, p.delta.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(p.delta.scalar_type(), "fisher_channel_sq_cuda", [&] {
    channel_sq_kernel<scalar_t><<<static_cast<unsigned>(groups * parts), kThreads, 0,
                                  c10::cuda::getCurrentCUDAStream()>>>(
        p.delta.data_ptr<scalar_t>(), p.sc, p.sn,
        p.a.defined() ? p.a.data_ptr<scalar_t>() : nullptr, partial.data_ptr<double>(), p.C,
        p.n, p.O, p.L, width, parts);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  out.copy_(partial.sum(1));   // a fixed-order reduction of [O, parts]
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fishermask_ext, CUDA, m) {
  m.impl("fisher_linear_sq", &fisher_linear_sq_cuda);
  m.impl("fisher_conv2d_sq", &fisher_conv2d_sq_cuda);
  m.impl("fisher_channel_sq", &fisher_channel_sq_cuda);
}

}  // namespace fishermask_ext
