// The one decoding of a Conv2d call's geometry for the conv ops of both devices
// (fisher_conv2d_sq: csrc/fisher_sq.h; masked_conv2d_grad: csrc/masked_grad.h): the sizes,
// stride, padding, dilation and groups (checked in checks.h), and the index math built on
// them: which input pixel a weight tap reads at an output position. The Python twins decode
// the same geometry in fishermask_ext/ops/conv.py.
#pragma once
#include <ATen/ATen.h>
#include <c10/macros/Macros.h>

#include <algorithm>

#include "checks.h"

namespace fishermask_ext {

// x [n, Cin, H, W] and delta [C, n, O, Ho, Wo] of one conv call with kernel (kh, kw), stride
// (sh, sw), padding (ph, pw), dilation (dh, dw) and `groups`: Ig = Cin/groups input and
// Og = O/groups output channels per group, K = Ig·kh·kw weight columns per output channel
// (weight.view(O, -1) order), L = Ho·Wo output positions.
struct ConvGeometry {
  int64_t n, Cin, H, W, C, O, Ho, Wo, kh, kw, sh, sw, ph, pw, dh, dw, groups, Ig, Og, K, L;
};

// Of arguments that passed check_conv_geometry (each op's check calls it).
inline ConvGeometry conv_geometry(const at::Tensor& x,      // [n, Cin, H, W]
                                  const at::Tensor& delta,  // [C, n, O, Ho, Wo]
                                  at::IntArrayRef kernel_size, at::IntArrayRef stride,
                                  at::IntArrayRef padding, at::IntArrayRef dilation,
                                  int64_t groups) {
  const int64_t Ig = x.size(1) / groups;
  return {x.size(0),      x.size(1),      x.size(2),  x.size(3),   delta.size(0),
          delta.size(2),  delta.size(3),  delta.size(4), kernel_size[0], kernel_size[1],
          stride[0],      stride[1],      padding[0], padding[1],  dilation[0],
          dilation[1],    groups,         Ig,         delta.size(2) / groups,
          Ig * kernel_size[0] * kernel_size[1], delta.size(3) * delta.size(4)};
}

// One weight tap: the input plane it reads and its offsets, so that at output (y, xo) it reads
// input row y·sh + y0 and column xo·sw + x0.
struct PatchRow {
  int64_t plane, y0, x0;
};

// Row r = (plane·kh + α)·kw + β of an im2col patch matrix [planes·kh·kw, L]: the tap (α, β) of
// input plane `plane`.
C10_HOST_DEVICE inline PatchRow patch_row(int64_t r, const ConvGeometry& g) {
  const int64_t beta = r % g.kw, alpha = r / g.kw % g.kh, plane = r / (g.kw * g.kh);
  return {plane, alpha * g.dh - g.ph, beta * g.dw - g.pw};
}

// The tap's input pixel at output (y, xo), from the plane's pixels xp [H, W]: 0 in the padding.
template <typename scalar_t>
C10_HOST_DEVICE inline scalar_t patch_at(const scalar_t* xp, const PatchRow& row, int64_t y,
                                         int64_t xo, const ConvGeometry& g) {
  const int64_t iy = y * g.sh + row.y0, ix = xo * g.sw + row.x0;
  return iy >= 0 && iy < g.H && ix >= 0 && ix < g.W ? xp[iy * g.W + ix] : scalar_t(0);
}

// The output columns [lo, hi) of one output row whose tap lands inside the input row (the
// rest read padding): 0 <= xo·sw + x0 < W.
struct Span {
  int64_t lo, hi;
};

C10_HOST_DEVICE inline Span valid_columns(const PatchRow& row, const ConvGeometry& g) {
  const int64_t lo = row.x0 >= 0 ? 0 : (-row.x0 + g.sw - 1) / g.sw;
  const int64_t last = g.W - 1 - row.x0;  // xo·sw <= last
  const int64_t hi = last < 0 ? 0 : std::min(g.Wo, last / g.sw + 1);
  return {std::min(lo, hi), hi};
}

// Weight entry flat = o·K + (i·kh + α)·kw + β of the [O, Ig, kh, kw] weight: output channel o
// and its tap, which reads input channel (o / Og)·Ig + i (the channels of o's group). Only for
// 0 <= flat < O·K.
struct ConvEntry {
  int64_t o;
  PatchRow tap;
};

C10_HOST_DEVICE inline ConvEntry decode_conv_entry(int64_t flat, const ConvGeometry& g) {
  const int64_t o = flat / g.K;
  PatchRow tap = patch_row(flat % g.K, g);   // plane i within the group
  tap.plane += o / g.Og * g.Ig;
  return {o, tap};
}

}  // namespace fishermask_ext
