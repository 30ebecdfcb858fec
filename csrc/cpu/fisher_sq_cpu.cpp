// CPU kernels of the step-A ops (docs/ALGORITHM.md): sums over samples and class seeds of squared
// per-sample gradients of Linear, Conv2d and per-channel (BatchNorm, bias) parameters. Schemas
// and exact math: csrc/ops.cpp; chunk loops and arithmetic shared with CUDA: csrc/fisher_sq.h.
#include <ATen/ATen.h>
#include <ATen/AccumulateType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>

#include "fisher_sq.h"

namespace fishermask_ext {
namespace {

constexpr int64_t kBlock = 256;  // entries per task: one accumulator block stays in L1

// out [Gr, R] += Σ_{p, c} G[p, g, c, r]², G [P, Gr, C, R] contiguous. Each task owns a block of
// entries and walks the rows over it: contiguous loads the compiler vectorises.
void square_sum_cpu(const at::Tensor& G, const at::Tensor& out) {
  const int64_t P = G.size(0), Gr = G.size(1), C = G.size(2), R = G.size(3);
  const int64_t blocks = (R + kBlock - 1) / kBlock;
  AT_DISPATCH_FLOATING_TYPES(G.scalar_type(), "square_sum_cpu", [&] {
    using acc_t = at::acc_type<scalar_t, /*is_cuda=*/false>;
    const scalar_t* gp = G.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    const int64_t grain = std::max<int64_t>(1, at::internal::GRAIN_SIZE / (kBlock * P * C + 1));
    at::parallel_for(0, Gr * blocks, grain, [&](int64_t begin, int64_t end) {
      std::array<acc_t, kBlock> acc;
      for (int64_t t = begin; t < end; ++t) {
        const int64_t g = t / blocks, r0 = t % blocks * kBlock, len = std::min(kBlock, R - r0);
        std::fill(acc.begin(), acc.begin() + len, acc_t(0));
        for (int64_t p = 0; p < P; ++p)
          for (int64_t c = 0; c < C; ++c) {
            const scalar_t* row = gp + gradient_row(p, g, c, Gr, C, R) + r0;
            for (int64_t j = 0; j < len; ++j) acc[j] += squared<acc_t>(row[j]);
          }
        scalar_t* o = op + g * R + r0;
        for (int64_t j = 0; j < len; ++j) o[j] = static_cast<scalar_t>(o[j] + acc[j]);
      }
    });
  });
}

// patches [P, Cin·kh·kw, Ho·Wo] of x [P, Cin, H, W] (contiguous): one task per row. The
// pixels of one output row lie on one input row: zeros, a strided copy, zeros.
void im2col_cpu(const at::Tensor& x, const PatchGeometry& g, const at::Tensor& patches) {
  const int64_t rows = patches.size(0) * patches.size(1), L = g.Ho * g.Wo;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "im2col_cpu", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    scalar_t* op = patches.data_ptr<scalar_t>();
    at::parallel_for(0, rows, std::max<int64_t>(1, at::internal::GRAIN_SIZE / (L + 1)),
                     [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const PatchRow row = patch_row(r, g);
        const Span span = valid_columns(row, g);
        const scalar_t* plane = xp + row.plane * g.H * g.W;
        for (int64_t y = 0; y < g.Ho; ++y) {
          scalar_t* dst = op + r * L + y * g.Wo;
          const int64_t iy = y * g.sh + row.y0;
          if (iy < 0 || iy >= g.H) {
            std::fill(dst, dst + g.Wo, scalar_t(0));
            continue;
          }
          const scalar_t* src = plane + iy * g.W + row.x0;
          std::fill(dst, dst + span.lo, scalar_t(0));
          for (int64_t xo = span.lo; xo < span.hi; ++xo) dst[xo] = src[xo * g.sw];
          std::fill(dst + span.hi, dst + g.Wo, scalar_t(0));
        }
      }
    });
  });
}

at::Tensor fisher_linear_sq_cpu(const at::Tensor& a,      // [n, S, I]
                                const at::Tensor& delta,  // [C, n, S, O]
                                int64_t chunk) {
  return fisher_linear_sq_impl(a, delta, chunk, square_sum_cpu);
}

at::Tensor fisher_conv2d_sq_cpu(const at::Tensor& x,      // [n, Cin, H, W]
                                const at::Tensor& delta,  // [C, n, O, Ho, Wo]
                                at::IntArrayRef kernel_size, at::IntArrayRef stride,
                                at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                                int64_t chunk) {
  return fisher_conv2d_sq_impl(x, delta, kernel_size, stride, padding, dilation, groups, chunk,
                               square_sum_cpu, im2col_cpu);
}

at::Tensor fisher_channel_sq_cpu(const at::Tensor& delta,               // [C, n, O, L]
                                 const c10::optional<at::Tensor>& a) {  // [n, O, L]
  const ChannelProblem p = prepare_fisher_channel_sq(delta, a);
  at::Tensor out = at::empty({p.O}, p.delta.options());  // [O]
  AT_DISPATCH_FLOATING_TYPES(p.delta.scalar_type(), "fisher_channel_sq_cpu", [&] {
    using acc_t = at::acc_type<scalar_t, /*is_cuda=*/false>;
    const scalar_t* dp = p.delta.data_ptr<scalar_t>();
    const scalar_t* ap = p.a.defined() ? p.a.data_ptr<scalar_t>() : nullptr;
    scalar_t* op = out.data_ptr<scalar_t>();
    const int64_t grain =
        std::max<int64_t>(1, at::internal::GRAIN_SIZE / (p.C * p.n * p.L + 1));
    at::parallel_for(0, p.O, grain, [&](int64_t begin, int64_t end) {
      for (int64_t o = begin; o < end; ++o)
        op[o] = static_cast<scalar_t>(
            channel_squares<acc_t>(dp, p.sc, p.sn, ap, p.n, p.O, p.L, p.C, o, /*q0=*/0,
                                   /*step=*/1));
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fishermask_ext, CPU, m) {
  m.impl("fisher_linear_sq", &fisher_linear_sq_cpu);
  m.impl("fisher_conv2d_sq", &fisher_conv2d_sq_cpu);
  m.impl("fisher_channel_sq", &fisher_channel_sq_cpu);
}

}  // namespace fishermask_ext
