// CPU kernels of the step-A ops (docs/ALGORITHM.md): sums over samples and class seeds of squared
// per-sample gradients of Linear, Conv2d and per-channel (BatchNorm, bias) parameters. Schemas
// and exact math: csrc/ops.cpp; chunk loops and arithmetic shared with CUDA: csrc/fisher_sq.h.
#include <ATen/ATen.h>
#include <ATen/AccumulateType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <vector>

#include "cpu/conv_square_sum.h"
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

// patches [P, G, L, Kp] of x [P, Cin, H, W] (contiguous), the transposed im2col that
// conv_square_sum.h reads: row (p, g, l) holds the K = Cin/G·kh·kw taps of output position l,
// in weight.view(O, -1) order, then Kp − K zeros. The taps (patch_row, shared with CUDA's
// im2col) are computed once per call: their divisions would cost more than the copies. At an
// interior position every tap is inside the image and a row is a plain gather at the taps'
// offsets; only the border rows test each tap (patch_at).
template <typename scalar_t>
void im2col_t_cpu(const at::Tensor& x, const ConvGeometry& g, int64_t Kp,
                  const at::Tensor& patches) {
  const int64_t P = x.size(0), G = g.groups, K = g.K, L = g.L, plane = g.H * g.W;
  std::vector<PatchRow> taps(G * K);
  std::vector<int64_t> offset(G * K);  // of tap r from pixel (y·sh, xo·sw) of plane 0
  for (int64_t r = 0; r < G * K; ++r) {
    taps[r] = patch_row(r, g);
    offset[r] = taps[r].plane * plane + taps[r].y0 * g.W + taps[r].x0;
  }
  // Interior: y·sh + y0 and xo·sw + x0 inside the image for every tap (y0, x0 range over the
  // kernel's reach: from −padding to (k − 1)·dilation − padding).
  const int64_t y_lo = g.ph, y_hi = g.H - (g.kh - 1) * g.dh + g.ph;  // y·sh in [y_lo, y_hi)
  const int64_t x_lo = g.pw, x_hi = g.W - (g.kw - 1) * g.dw + g.pw;
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  scalar_t* op = patches.data_ptr<scalar_t>();
  at::parallel_for(0, P * G * L, std::max<int64_t>(1, at::internal::GRAIN_SIZE / (Kp + 1)),
                   [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t l = row % L, gi = row / L % G, p = row / (L * G);
      const int64_t y = l / g.Wo, xo = l % g.Wo, iy = y * g.sh, ix = xo * g.sw;
      const scalar_t* xs = xp + p * g.Cin * plane;
      scalar_t* dst = op + row * Kp;
      if (iy >= y_lo && iy < y_hi && ix >= x_lo && ix < x_hi) {
        const scalar_t* at = xs + iy * g.W + ix;
        const int64_t* off = offset.data() + gi * K;
        for (int64_t k = 0; k < K; ++k) dst[k] = at[off[k]];
      } else {
        const PatchRow* tap = taps.data() + gi * K;
        for (int64_t k = 0; k < K; ++k)
          dst[k] = patch_at(xs + tap[k].plane * plane, tap[k], y, xo, g);
      }
      std::fill(dst + K, dst + Kp, scalar_t(0));
    }
  });
}

at::Tensor fisher_linear_sq_cpu(const at::Tensor& a,      // [n, S, I]
                                const at::Tensor& delta,  // [C, n, S, O]
                                int64_t chunk) {
  return fisher_linear_sq_impl(a, delta, chunk, square_sum_cpu);
}

// A chunk of fisher_conv2d_sq (fisher_conv2d_sq_impl's Squares) on the CPU: the transposed
// im2col, then the fused product of conv_square_sum.h into an [O, Kp] float64 accumulator; a
// per-sample gradient is never stored (CUDA forms them with cuBLAS instead).
class ConvSquaresCpu {
 public:
  ConvSquaresCpu(const ConvGeometry& g, const at::Tensor& delta, int64_t most)  // [C, n, O, Ho, Wo]
      : g_(g), d_(class_sample_blocks(delta.flatten(3))) {
    AT_DISPATCH_FLOATING_TYPES(delta.scalar_type(), "fisher_conv2d_sq_cpu", [&] {
      const int64_t W = cpu::conv_lanes<scalar_t>();
      Kp_ = (g.K + W - 1) / W * W;
      column_blocks_ = cpu::conv_column_blocks<scalar_t>(Kp_).count;
    });
    acc_ = at::zeros({g.O, Kp_}, delta.options().dtype(at::kDouble));
    // One patch buffer, reused: fresh chunk-sized tensors would cost page faults on every chunk
    // (the allocator returns large blocks to the OS).
    patches_ = at::empty({most * g.groups * g.L * Kp_}, delta.options());
  }

  void add(const at::Tensor& x, int64_t s) {  // [P, Cin, H, W] contiguous: samples s .. s + P
    const int64_t P = x.size(0);
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fisher_conv2d_sq_cpu", [&] {
      im2col_t_cpu<scalar_t>(x, g_, Kp_, patches_);
      const cpu::ConvChunk<scalar_t> job{d_.delta.const_data_ptr<scalar_t>() + s * d_.sn,
                                         d_.sc, d_.sn, patches_.const_data_ptr<scalar_t>(),
                                         acc_.data_ptr<double>(), P, g_.groups, g_.Og, g_.C,
                                         g_.L, Kp_};
      const int64_t per_tile =
          std::max<int64_t>(1, P * g_.C * g_.L * Kp_ / std::max<int64_t>(1, column_blocks_));
      at::parallel_for(0, column_blocks_ * g_.O,
                       std::max<int64_t>(1, at::internal::GRAIN_SIZE / per_tile),
                       [&](int64_t b, int64_t e) { cpu::run_conv_tiles(job, b, e); });
    });
  }

  at::Tensor result() const {  // [O, K]
    return acc_.narrow(1, 0, g_.K).to(d_.delta.scalar_type()).contiguous();
  }

 private:
  ConvGeometry g_;
  ClassSampleBlocks d_;
  int64_t Kp_ = 0, column_blocks_ = 0;
  at::Tensor acc_, patches_;
};

at::Tensor fisher_conv2d_sq_cpu(const at::Tensor& x,      // [n, Cin, H, W]
                                const at::Tensor& delta,  // [C, n, O, Ho, Wo]
                                at::IntArrayRef kernel_size, at::IntArrayRef stride,
                                at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                                int64_t chunk) {
  return fisher_conv2d_sq_impl<ConvSquaresCpu>(x, delta, kernel_size, stride, padding, dilation,
                                               groups, chunk);
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
      for (int64_t o = begin; o < end; ++o) {
        acc_t acc = 0;   // Σ_{c, i} channel_sum(...)² of output channel o
        for (int64_t q = 0; q < p.C * p.n; ++q) {
          const int64_t c = q / p.n, i = q % p.n;
          const acc_t v = channel_sum<acc_t>(dp + c * p.sc + i * p.sn + o * p.L,
                                             ap == nullptr ? ap : ap + (i * p.O + o) * p.L, p.L);
          acc += v * v;
        }
        op[o] = static_cast<scalar_t>(acc);
      }
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
