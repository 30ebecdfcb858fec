// CPU kernels of the step-C embedding ops (docs/ALGORITHM.md): per-sample masked weight gradients of
// Linear and Conv2d layers for all C class seeds at once. Schemas and exact math: csrc/ops.cpp.
// Each (sample, masked entry) pair reads its activations once and feeds all C classes.
#include <ATen/ATen.h>
#include <ATen/AccumulateType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "masked_grad.h"

namespace fishermask_ext {
namespace {

// Runs body(sample, k, acc) for every (sample, masked entry k) pair in parallel. body adds the
// C class sums into acc (zeroed here); they are then stored to out [n, C, m]. `work` is the
// number of activation reads per pair, for the chunk size.
template <typename scalar_t, typename Body>
void for_each_pair(int64_t n, int64_t C, int64_t m, int64_t work,
                   scalar_t* out,  // [n, C, m]
                   const Body& body) {
  using acc_t = at::acc_type<scalar_t, /*is_cuda=*/false>;
  const int64_t grain =
      std::max<int64_t>(1, at::internal::GRAIN_SIZE / std::max<int64_t>(1, work * C));
  at::parallel_for(0, n * m, grain, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(C);
    for (int64_t p = begin; p < end; ++p) {
      const int64_t s = p / m, k = p % m;
      std::fill(acc.begin(), acc.end(), acc_t(0));
      body(s, k, acc.data());
      for (int64_t c = 0; c < C; ++c) out[(s * C + c) * m + k] = static_cast<scalar_t>(acc[c]);
    }
  });
}

at::Tensor masked_linear_grad_cpu(const at::Tensor& a,      // [n, S, I]
                                  const at::Tensor& delta,  // [C, n, S, O]
                                  const at::Tensor& index   // [m] int64
) {
  const LinearProblem p = prepare_masked_linear_grad(a, delta, index);
  const int64_t n = p.n, S = p.S, I = p.I, C = p.C, O = p.O;
  at::Tensor out = at::empty({n, C, p.m}, p.a.options());  // [n, C, m]
  AT_DISPATCH_FLOATING_TYPES(p.a.scalar_type(), "masked_linear_grad_cpu", [&] {
    using acc_t = at::acc_type<scalar_t, false>;
    const scalar_t* ap = p.a.data_ptr<scalar_t>();
    const scalar_t* dp = p.delta.data_ptr<scalar_t>();
    const int64_t* ip = p.index.data_ptr<int64_t>();
    const int64_t class_stride = n * S * O;
    for_each_pair(n, C, p.m, S, out.data_ptr<scalar_t>(), [&](int64_t s, int64_t k, acc_t* acc) {
      const int64_t o = ip[k] / I, i = ip[k] % I;
      for (int64_t t = 0; t < S; ++t) {
        const acc_t av = ap[(s * S + t) * I + i];
        const scalar_t* d = dp + (s * S + t) * O + o;  // class c at d[c * class_stride]
        for (int64_t c = 0; c < C; ++c) acc[c] += static_cast<acc_t>(d[c * class_stride]) * av;
      }
    });
  });
  return out;
}

at::Tensor masked_conv2d_grad_cpu(const at::Tensor& x,      // [n, Cin, H, W]
                                  const at::Tensor& delta,  // [C, n, O, Ho, Wo]
                                  const at::Tensor& index,  // [m] int64
                                  at::IntArrayRef kernel_size, at::IntArrayRef stride,
                                  at::IntArrayRef padding, at::IntArrayRef dilation,
                                  int64_t groups) {
  const ConvProblem p = prepare_masked_conv2d_grad(x, delta, index, kernel_size, stride, padding,
                                                   dilation, groups);
  const ConvGeometry& g = p.g;
  at::Tensor out = at::empty({g.n, g.C, p.m}, p.x.options());  // [n, C, m]
  AT_DISPATCH_FLOATING_TYPES(p.x.scalar_type(), "masked_conv2d_grad_cpu", [&] {
    using acc_t = at::acc_type<scalar_t, false>;
    const scalar_t* xp = p.x.data_ptr<scalar_t>();
    const scalar_t* dp = p.delta.data_ptr<scalar_t>();
    const int64_t* ip = p.index.data_ptr<int64_t>();
    const int64_t class_stride = g.n * g.O * g.L;
    scalar_t* op = out.data_ptr<scalar_t>();
    for_each_pair(g.n, g.C, p.m, g.L, op, [&](int64_t s, int64_t k, acc_t* acc) {
      const ConvEntry e = decode_conv_entry(ip[k], g);
      const scalar_t* xs = xp + (s * g.Cin + e.tap.plane) * g.H * g.W;
      const scalar_t* ds = dp + (s * g.O + e.o) * g.L;
      const Span cols = valid_columns(e.tap, g);  // the rest read the implicit zero padding
      for (int64_t y = 0; y < g.Ho; ++y) {
        const int64_t iy = y * g.sh + e.tap.y0;
        if (iy < 0 || iy >= g.H) continue;
        for (int64_t xo = cols.lo; xo < cols.hi; ++xo) {
          const acc_t xv = xs[iy * g.W + xo * g.sw + e.tap.x0];
          const scalar_t* d = ds + y * g.Wo + xo;  // class c at d[c * class_stride]
          for (int64_t c = 0; c < g.C; ++c) acc[c] += static_cast<acc_t>(d[c * class_stride]) * xv;
        }
      }
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fishermask_ext, CPU, m) {
  m.impl("masked_linear_grad", &masked_linear_grad_cpu);
  m.impl("masked_conv2d_grad", &masked_conv2d_grad_cpu);
}

}  // namespace fishermask_ext
