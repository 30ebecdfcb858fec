// CUDA kernels of the step-A ops (docs/ALGORITHM.md): sums over samples and class seeds of
// squared per-sample gradients, summed in float64 as on the CPU. Schemas and exact math: csrc/ops.cpp; the chunk loops (cuBLAS
// batched GEMMs through ATen) and the arithmetic are csrc/fisher_sq.h, shared with the CPU.
// Conv2d weights: ConvSquaresCuda is the per-chunk work of the shared fisher_conv2d_sq_impl.
// im2col: one thread per patch entry. square_sum: one thread per gradient entry, its loads coalesced across the warp.
// channel: one block per output channel, threads split the (class, sample) pairs, then a
// fixed-order tree sum in shared memory (deterministic, no atomics).
#include <ATen/ATen.h>
#include <ATen/AccumulateType.h>
#include <ATen/Context.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>

#include "fisher_sq.h"

namespace fishermask_ext {
namespace {

constexpr int kThreads = 256;
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

template <typename scalar_t>
__global__ void channel_sq_kernel(const scalar_t* __restrict__ delta,  // [C, n, O, L]
                                  int64_t sc, int64_t sn,              // its strides over C, n
                                  const scalar_t* __restrict__ a,      // [n, O, L] or null
                                  scalar_t* __restrict__ out,          // [O]
                                  int64_t C, int64_t n, int64_t O, int64_t L) {
  using acc_t = at::acc_type<scalar_t, /*is_cuda=*/false>;   // float64, as on the CPU
  __shared__ acc_t part[kThreads];
  const int64_t o = blockIdx.x;
  part[threadIdx.x] = channel_squares<acc_t>(delta, sc, sn, a, n, O, L, C, o, threadIdx.x,
                                                kThreads);
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) part[threadIdx.x] += part[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[o] = static_cast<scalar_t>(part[0]);
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
  AT_DISPATCH_FLOATING_TYPES(p.delta.scalar_type(), "fisher_channel_sq_cuda", [&] {
    channel_sq_kernel<scalar_t><<<static_cast<unsigned>(p.O), kThreads, 0,
                                  c10::cuda::getCurrentCUDAStream()>>>(
        p.delta.data_ptr<scalar_t>(), p.sc, p.sn,
        p.a.defined() ? p.a.data_ptr<scalar_t>() : nullptr,
        out.data_ptr<scalar_t>(), p.C, p.n, p.O, p.L);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fishermask_ext, CUDA, m) {
  m.impl("fisher_linear_sq", &fisher_linear_sq_cuda);
  m.impl("fisher_conv2d_sq", &fisher_conv2d_sq_cuda);
  m.impl("fisher_channel_sq", &fisher_channel_sq_cuda);
}

}  // namespace fishermask_ext
