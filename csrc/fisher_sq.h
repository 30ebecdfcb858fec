// Step A of docs/ALGORITHM.md: the chunk loops and per-element arithmetic of the fisher_*_sq
// ops, shared by csrc/cpu/fisher_sq_cpu.cpp and csrc/cuda/fisher_sq_cuda.cu. Math and shapes:
// csrc/ops.cpp.
//
// On CUDA a chunk's per-sample gradients come from cuBLAS's batched GEMM (almost all the FLOPs,
// at the BLAS's rate); the device's own kernel then folds their squares into the sum, reading
// each gradient once and never storing a square. On the CPU, Conv2d weights skip the stored
// gradients altogether: csrc/cpu/conv_square_sum.h squares each gradient in registers (the
// GEMM's output round trip through memory cost more than its FLOPs there). Either way only one
// chunk exists at a time: memory grows with `chunk`, not with the batch.
#pragma once
#include <ATen/ATen.h>
#include <c10/macros/Macros.h>

#include <algorithm>
#include <type_traits>

#include "checks.h"
#include "conv_geometry.h"

namespace fishermask_ext {

// One term of the sums, squared in the accumulation type.
template <typename acc_t, typename scalar_t>
C10_HOST_DEVICE inline acc_t squared(scalar_t v) {
  const acc_t a = static_cast<acc_t>(v);
  return a * a;
}

// Row (p, g, c) of a chunk's gradients G [P, Gr, C, R]: sample p, group g, class c.
C10_HOST_DEVICE inline int64_t gradient_row(int64_t p, int64_t g, int64_t c, int64_t Gr,
                                            int64_t C, int64_t R) {
  return ((p * Gr + g) * C + c) * R;
}

// One position's term of a per-sample channel gradient: d[l]·a[l] (BatchNorm γ, a = x̂) or d[l]
// (a bias, a == nullptr). Both devices sum the L terms of a channel in float64, each in its
// own order: the CPU in channel_sum, CUDA across a segment of lanes (fisher_sq_cuda.cu).
template <typename acc_t, typename scalar_t>
C10_HOST_DEVICE inline acc_t channel_term(const scalar_t* d, const scalar_t* a, int64_t l) {
  return a == nullptr ? static_cast<acc_t>(d[l])
                      : static_cast<acc_t>(d[l]) * static_cast<acc_t>(a[l]);
}

// The CPU's Σ_l channel_term over one channel, in kParts interleaved partial sums: one running
// sum is a chain of dependent adds (latency bound, and the compiler may not reorder it into
// vectors); kParts independent ones vectorise. Each branch fixes `a`'s nullness for its loop.
constexpr int kParts = 8;

template <typename acc_t, typename scalar_t>
inline acc_t channel_sum(const scalar_t* d, const scalar_t* a, int64_t L) {
  acc_t s[kParts] = {};
  const int64_t full = L / kParts * kParts;
  const auto sum = [&](auto with_a) {  // std::bool_constant
    const scalar_t* const ap = decltype(with_a)::value ? a : nullptr;
    for (int64_t l = 0; l < full; l += kParts)
      for (int k = 0; k < kParts; ++k) s[k] += channel_term<acc_t>(d, ap, l + k);
    for (int64_t l = full; l < L; ++l) s[l - full] += channel_term<acc_t>(d, ap, l);
  };
  if (a == nullptr)
    sum(std::false_type{});
  else
    sum(std::true_type{});
  acc_t total = 0;
  for (int k = 0; k < kParts; ++k) total += s[k];
  return total;
}

// fisher_linear_sq with the device's square_sum(G [P, Gr, C, R], out [Gr, R]), which adds
// Σ_{p, c} G[p, g, c, r]² to out[g, r].
template <typename SquareSum>
at::Tensor fisher_linear_sq_impl(const at::Tensor& a,      // [n, S, I]
                                 const at::Tensor& delta,  // [C, n, S, O]
                                 int64_t chunk, const SquareSum& square_sum) {
  check_fisher_linear_sq(a, delta, chunk);
  const int64_t n = a.size(0), S = a.size(1), I = a.size(2), C = delta.size(0),
                O = delta.size(3);
  at::Tensor out = at::zeros({O, I}, a.options());  // [O, I]
  // Reused across chunks: fresh chunk-sized tensors would cost page faults on every chunk (the
  // allocator returns large blocks to the OS).
  at::Tensor grad_buf = at::empty({S == 1 ? 0 : std::min(chunk, n) * C * O * I}, a.options());
  for (int64_t s = 0; s < n; s += chunk) {
    const int64_t P = std::min(chunk, n - s);
    const at::Tensor ac = a.narrow(0, s, P);      // [P, S, I]
    const at::Tensor dc = delta.narrow(1, s, P);  // [C, P, S, O]
    if (S == 1) {
      // Applied once per sample, a gradient is the outer product δ aᵀ, and (δ_o a_i)² =
      // δ_o² a_i²: the sum over samples and classes is one product of squared factors.
      out.addmm_(dc.select(2, 0).square().sum(0).t(), ac.select(1, 0).square());  // [O,P][P,I]
    } else {
      // Weight shared over S positions: the gradient is Σ_s δ_s a_sᵀ, which must be formed
      // before squaring. Classes join the rows so each sample's a is read once for all C.
      at::Tensor G = grad_buf.narrow(0, 0, P * C * O * I).view({P, C * O, I});
      at::bmm_out(G, dc.permute({1, 0, 3, 2}).reshape({P, C * O, S}), ac);
      square_sum(G.view({P, 1, C, O * I}), out.view({1, O * I}));
    }
  }
  return out;
}

// fisher_conv2d_sq on either device, `chunk` samples at a time: the checks, the geometry and
// the chunk loop are written here once, a chunk's arithmetic is the device's Squares:
//   Squares(geometry, delta [C, n, O, Ho, Wo], most): ready for chunks of up to `most` samples;
//   add(x_chunk [P, Cin, H, W] contiguous, s): adds Σ_{p, c} G[c, p]² over the chunk's
//     per-sample gradients G [C, P, O, K] (samples s .. s + P of delta);
//   result(): the sums, [O, K] in x's dtype, weight.view(O, -1) order.
// CUDA forms a chunk's gradients with cuBLAS and then squares them (fisher_sq_cuda.cu); the
// CPU squares them in registers and never stores them (cpu/fisher_sq_cpu.cpp).
template <typename Squares>
at::Tensor fisher_conv2d_sq_impl(const at::Tensor& x,      // [n, Cin, H, W]
                                 const at::Tensor& delta,  // [C, n, O, Ho, Wo]
                                 at::IntArrayRef kernel_size, at::IntArrayRef stride,
                                 at::IntArrayRef padding, at::IntArrayRef dilation,
                                 int64_t groups, int64_t chunk) {
  check_fisher_conv2d_sq(x, delta, kernel_size, stride, padding, dilation, groups, chunk);
  const ConvGeometry g = conv_geometry(x, delta, kernel_size, stride, padding, dilation, groups);
  Squares squares(g, delta, std::min(chunk, g.n));
  for (int64_t s = 0; s < g.n; s += chunk)
    squares.add(x.narrow(0, s, std::min(chunk, g.n - s)).contiguous(), s);
  return squares.result();
}

// delta [C, n, O, L] with each [O, L] block (one class of one sample) contiguous, and its
// strides over classes and samples in elements. Any other strides are kept: step A stores the
// deltas sample-major (nn/hooks.py, stacked_deltas), and a copy to class-major would read and
// write all of them once more. A delta without contiguous blocks is copied.
struct ClassSampleBlocks {
  at::Tensor delta;
  int64_t sc, sn;
};

inline ClassSampleBlocks class_sample_blocks(const at::Tensor& d) {  // [C, n, O, L]
  const int64_t O = d.size(2), L = d.size(3);
  const bool blocks = (L == 1 || d.stride(3) == 1) && (O == 1 || d.stride(2) == L);
  const at::Tensor t = blocks ? d : d.contiguous();
  return {t, t.stride(0), t.stride(1)};
}

// fisher_channel_sq's inputs, checked, delta as class_sample_blocks.
struct ChannelProblem {
  at::Tensor delta, a;  // [C, n, O, L] with contiguous [O, L] blocks; [n, O, L] or undefined
  int64_t C, n, O, L;
  int64_t sc, sn;       // delta's strides over classes and samples, in elements
};

inline ChannelProblem prepare_fisher_channel_sq(const at::Tensor& delta_,  // [C, n, O, L]
                                                const c10::optional<at::Tensor>& a  // [n, O, L]
) {
  check_fisher_channel_sq(delta_, a);
  const ClassSampleBlocks d = class_sample_blocks(delta_);
  return {d.delta, a.has_value() ? a->contiguous() : at::Tensor(), d.delta.size(0),
          d.delta.size(1), d.delta.size(2), d.delta.size(3), d.sc, d.sn};
}

}  // namespace fishermask_ext
