// Argument checks shared by the CPU and CUDA kernels (one place, both devices).
// The Python API validates user input with friendlier messages first; these guard the raw ops.
#pragma once
#include <ATen/ATen.h>

namespace fishermask_ext {

inline void check_float(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, name,
              " must be float32 or float64, got ", t.scalar_type());
}

inline void check_same_device(const at::Tensor& a, const at::Tensor& b, const char* name_a,
                              const char* name_b) {
  TORCH_CHECK(a.device() == b.device(), name_a, " is on ", a.device(), " but ", name_b,
              " is on ", b.device(), "; move them to one device");
}

inline void check_shape(const at::Tensor& t, at::IntArrayRef shape, const char* name) {
  TORCH_CHECK(t.sizes() == shape, name, " must have shape ", shape, ", got ", t.sizes());
}

// trace_ratio_step: A, B [N, C, C] f64 with one dense layout (contiguous, or CUDA's
// candidate-minor); X [N, C, D] f32/f64; UV [D, 2C] f64 or absent; S, Q [C, C] f64;
// eligible [N] bool.
inline void check_trace_ratio_step(const at::Tensor& A, const at::Tensor& B, const at::Tensor& X,
                                   const c10::optional<at::Tensor>& UV, const at::Tensor& S,
                                   const at::Tensor& Q, const at::Tensor& eligible) {
  TORCH_CHECK(A.dim() == 3 && A.size(1) == A.size(2), "A must be [N, C, C], got ", A.sizes());
  const int64_t N = A.size(0), C = A.size(1);
  TORCH_CHECK(C >= 1, "A must be [N, C, C] with C >= 1, got ", A.sizes());   // C = 0: no scores
  TORCH_CHECK(A.scalar_type() == at::kDouble && B.scalar_type() == at::kDouble &&
                  S.scalar_type() == at::kDouble && Q.scalar_type() == at::kDouble,
              "A, B, S and Q must be float64");
  check_shape(B, {N, C, C}, "B");
  // Updated in place through one set of strides: no element may alias another.
  TORCH_CHECK(A.is_non_overlapping_and_dense() && A.strides() == B.strides(),
              "A and B must be dense, non-overlapping and share one layout, got strides ",
              A.strides(), " and ", B.strides());
  check_shape(S, {C, C}, "S");
  check_shape(Q, {C, C}, "Q");
  check_shape(eligible, {N}, "eligible");
  TORCH_CHECK(eligible.scalar_type() == at::kBool, "eligible must be bool");
  check_float(X, "X");
  TORCH_CHECK(X.dim() == 3 && X.size(0) == N && X.size(1) == C,
              "X must be [N, C, D] = [", N, ", ", C, ", D], got ", X.sizes());
  for (const at::Tensor* t : {&B, &X, &S, &Q, &eligible}) check_same_device(A, *t, "A", "an argument");
  if (UV.has_value()) {
    // float64 whatever X is: float32 X is storage, the products are float64.
    TORCH_CHECK(UV->scalar_type() == at::kDouble, "UV must be float64, got ", UV->scalar_type());
    check_shape(*UV, {X.size(2), 2 * C}, "UV");
    check_same_device(A, *UV, "A", "UV");
  }
}

// trace_ratio_update: A, B [N, C, C] f64 (C >= 1) of one non-overlapping layout; WZ [N, C, 2C]
// or [N, C, 0] f64; S, Q [C, C] f64; eligible [N] bool; all on A's device.
inline void check_trace_ratio_update(const at::Tensor& A, const at::Tensor& B,
                                     const at::Tensor& WZ, const at::Tensor& S,
                                     const at::Tensor& Q, const at::Tensor& eligible) {
  TORCH_CHECK(A.dim() == 3 && A.size(1) == A.size(2) && A.size(1) >= 1,
              "A must be [N, C, C] with C >= 1, got ", A.sizes());
  const int64_t N = A.size(0), C = A.size(1);
  TORCH_CHECK(A.scalar_type() == at::kDouble && B.scalar_type() == at::kDouble &&
                  WZ.scalar_type() == at::kDouble && S.scalar_type() == at::kDouble &&
                  Q.scalar_type() == at::kDouble,
              "A, B, WZ, S and Q must be float64");
  check_shape(B, {N, C, C}, "B");
  // Updated in place through one set of strides: no element may alias another.
  TORCH_CHECK(A.is_non_overlapping_and_dense() && A.strides() == B.strides(),
              "A and B must be dense, non-overlapping and share one layout, got strides ",
              A.strides(), " and ", B.strides());
  TORCH_CHECK(WZ.dim() == 3 && WZ.size(0) == N && WZ.size(1) == C &&
                  (WZ.size(2) == 2 * C || WZ.size(2) == 0),
              "WZ must be [N, C, 2C] = [", N, ", ", C, ", ", 2 * C, "] (or [N, C, 0]: no "
              "update), got ", WZ.sizes());
  check_shape(S, {C, C}, "S");
  check_shape(Q, {C, C}, "Q");
  check_shape(eligible, {N}, "eligible");
  TORCH_CHECK(eligible.scalar_type() == at::kBool, "eligible must be bool");
  for (const at::Tensor* t : {&B, &WZ, &S, &Q, &eligible})
    check_same_device(A, *t, "A", "an argument");
}

// Factored embeddings: G [n, C, C] (C >= 1), H [n, d̄], R absent or [n, C, D_r], one f32/f64
// dtype and device; returns D = C·d̄ + D_r.
inline int64_t check_factors(const at::Tensor& G, const at::Tensor& H,
                             const c10::optional<at::Tensor>& R) {
  TORCH_CHECK(G.dim() == 3 && G.size(1) == G.size(2) && G.size(1) >= 1,
              "G must be [n, C, C] with C >= 1, got ", G.sizes());
  check_float(G, "G");
  const int64_t n = G.size(0), C = G.size(1);
  TORCH_CHECK(H.dim() == 2 && H.size(0) == n, "H must be [n, d] with n = ", n, ", got ",
              H.sizes());
  TORCH_CHECK(H.scalar_type() == G.scalar_type(), "G and H must have one dtype");
  check_same_device(G, H, "G", "H");
  int64_t D = C * H.size(1);
  if (R.has_value()) {
    TORCH_CHECK(R->dim() == 3 && R->size(0) == n && R->size(1) == C,
                "R must be [n, C, D_r] = [", n, ", ", C, ", D_r], got ", R->sizes());
    TORCH_CHECK(R->scalar_type() == G.scalar_type(), "G and R must have one dtype");
    check_same_device(G, *R, "G", "R");
    D += R->size(2);
  }
  return D;
}

// commit_direction: P, F [D, D] f64; xt [C, D] f64 with C >= 1; S [C, C] f64.
inline void check_commit_direction(const at::Tensor& P, const at::Tensor& F, const at::Tensor& xt,
                                   const at::Tensor& S) {
  TORCH_CHECK(P.dim() == 2 && P.size(0) == P.size(1), "P must be [D, D], got ", P.sizes());
  const int64_t D = P.size(0);
  TORCH_CHECK(P.scalar_type() == at::kDouble && F.scalar_type() == at::kDouble &&
                  xt.scalar_type() == at::kDouble && S.scalar_type() == at::kDouble,
              "P, F, xt and S must be float64");
  check_shape(F, {D, D}, "F");
  TORCH_CHECK(xt.dim() == 2 && xt.size(0) >= 1 && xt.size(1) == D,
              "xt must be [C, D] = [C, ", D, "] with C >= 1, got ", xt.sizes());
  check_shape(S, {xt.size(0), xt.size(0)}, "S");
  for (const at::Tensor* t : {&F, &xt, &S}) check_same_device(P, *t, "P", "an argument");
}

// The one chunk rule of every op that takes a chunk (samples or candidates at a time).
inline void check_chunk(int64_t chunk) {
  TORCH_CHECK(chunk >= 1, "chunk (samples per chunk) must be >= 1, got ", chunk);
}

// trace_ratio_init: X [N, C, D] f32/f64; P0, F [D, D] f64 on X's device; chunk, block >= 1.
inline void check_trace_ratio_init(const at::Tensor& X, const at::Tensor& P0,
                                   const at::Tensor& F, int64_t chunk, int64_t block) {
  TORCH_CHECK(X.dim() == 3, "X must be [N, C, D], got ", X.sizes());
  check_float(X, "X");
  const int64_t D = X.size(2);
  TORCH_CHECK(P0.scalar_type() == at::kDouble && F.scalar_type() == at::kDouble,
              "P0 and F must be float64");
  check_shape(P0, {D, D}, "P0");
  check_shape(F, {D, D}, "F");
  check_same_device(X, P0, "X", "P0");
  check_same_device(X, F, "X", "F");
  check_chunk(chunk);
  TORCH_CHECK(block >= 1, "block (columns per block) must be >= 1, got ", block);
}

// greedy_select: trace_ratio_init's, and 1 <= budget <= n_forward <= the number of candidates
// (candidates: [N] bool on X's device, or none = all N rows).
inline void check_greedy_select(const at::Tensor& X, const at::Tensor& P0, const at::Tensor& F,
                                int64_t budget, int64_t n_forward, int64_t chunk, int64_t block,
                                const c10::optional<at::Tensor>& candidates) {
  check_trace_ratio_init(X, P0, F, chunk, block);
  int64_t n = X.size(0);
  if (candidates.has_value()) {
    TORCH_CHECK(candidates->scalar_type() == at::kBool, "candidates must be bool");
    check_shape(*candidates, {X.size(0)}, "candidates");
    check_same_device(X, *candidates, "X", "candidates");
    n = candidates->sum().item<int64_t>();
  }
  TORCH_CHECK(budget >= 1 && budget <= n_forward && n_forward <= n,
              "need 1 <= budget <= n_forward <= the number of candidates, got budget=", budget,
              " n_forward=", n_forward, " candidates=", n);
}

// The Linear layer's inputs shared by masked_linear_grad and fisher_linear_sq: a [n, S, I]
// f32/f64; delta [C, n, S, O] of a's n, S, dtype and device.
inline void check_linear_inputs(const at::Tensor& a, const at::Tensor& delta) {
  TORCH_CHECK(a.dim() == 3, "a must be [n, S, I], got ", a.sizes());
  TORCH_CHECK(delta.dim() == 4 && delta.size(1) == a.size(0) && delta.size(2) == a.size(1),
              "delta must be [C, n, S, O] with n, S of a ", a.sizes(), ", got ", delta.sizes());
  check_float(a, "a");
  TORCH_CHECK(delta.scalar_type() == a.scalar_type(), "a and delta must have one dtype");
  check_same_device(a, delta, "a", "delta");
}

// masked_linear_grad: check_linear_inputs; index [m] int64 in [0, O*I).
inline void check_masked_linear_grad(const at::Tensor& a, const at::Tensor& delta,
                                     const at::Tensor& index) {
  check_linear_inputs(a, delta);
  TORCH_CHECK(index.dim() == 1 && index.scalar_type() == at::kLong, "index must be [m] int64");
  check_same_device(a, index, "a", "index");
}

// The convolution geometry shared by masked_conv2d_grad and fisher_conv2d_sq:
// x [n, Cin, H, W]; delta [C, n, O, Ho, Wo] of one dtype and device, Ho, Wo as the conv gives.
inline void check_conv_geometry(const at::Tensor& x, const at::Tensor& delta,
                                at::IntArrayRef kernel_size, at::IntArrayRef stride,
                                at::IntArrayRef padding, at::IntArrayRef dilation,
                                int64_t groups) {
  TORCH_CHECK(x.dim() == 4, "x must be [n, Cin, H, W], got ", x.sizes());
  TORCH_CHECK(delta.dim() == 5 && delta.size(1) == x.size(0),
              "delta must be [C, n, O, Ho, Wo] with n of x, got ", delta.sizes());
  check_float(x, "x");
  TORCH_CHECK(delta.scalar_type() == x.scalar_type(), "x and delta must have one dtype");
  check_same_device(x, delta, "x", "delta");
  TORCH_CHECK(kernel_size.size() == 2 && stride.size() == 2 && padding.size() == 2 &&
                  dilation.size() == 2, "kernel_size, stride, padding, dilation take 2 values");
  TORCH_CHECK(groups >= 1 && x.size(1) % groups == 0 && delta.size(2) % groups == 0,
              "groups=", groups, " must divide Cin=", x.size(1), " and O=", delta.size(2));
  for (int d = 0; d < 2; ++d) {
    TORCH_CHECK(kernel_size[d] >= 1 && stride[d] >= 1 && dilation[d] >= 1 && padding[d] >= 0,
                "need kernel_size, stride, dilation >= 1 and padding >= 0, got kernel_size=",
                kernel_size, " stride=", stride, " dilation=", dilation, " padding=", padding);
    const int64_t span = dilation[d] * (kernel_size[d] - 1) + 1;
    TORCH_CHECK(x.size(2 + d) + 2 * padding[d] >= span, "the padded input (", x.size(2 + d),
                " + 2*", padding[d], ") is smaller than the kernel span ", span);
    const int64_t out = (x.size(2 + d) + 2 * padding[d] - span) / stride[d] + 1;
    TORCH_CHECK(delta.size(3 + d) == out, "delta spatial dim ", d, " is ", delta.size(3 + d),
                " but the convolution gives ", out);
  }
}

// masked_conv2d_grad: x [n, Cin, H, W]; delta [C, n, O, Ho, Wo]; index [m] int64.
inline void check_masked_conv2d_grad(const at::Tensor& x, const at::Tensor& delta,
                                     const at::Tensor& index, at::IntArrayRef kernel_size,
                                     at::IntArrayRef stride, at::IntArrayRef padding,
                                     at::IntArrayRef dilation, int64_t groups) {
  check_conv_geometry(x, delta, kernel_size, stride, padding, dilation, groups);
  TORCH_CHECK(index.dim() == 1 && index.scalar_type() == at::kLong, "index must be [m] int64");
  check_same_device(x, index, "x", "index");
}

// fisher_linear_sq: check_linear_inputs; chunk >= 1.
inline void check_fisher_linear_sq(const at::Tensor& a, const at::Tensor& delta, int64_t chunk) {
  check_linear_inputs(a, delta);
  check_chunk(chunk);
}

// fisher_conv2d_sq: the conv geometry of check_conv_geometry; chunk >= 1.
inline void check_fisher_conv2d_sq(const at::Tensor& x, const at::Tensor& delta,
                                   at::IntArrayRef kernel_size, at::IntArrayRef stride,
                                   at::IntArrayRef padding, at::IntArrayRef dilation,
                                   int64_t groups, int64_t chunk) {
  check_conv_geometry(x, delta, kernel_size, stride, padding, dilation, groups);
  check_chunk(chunk);
}

// fisher_channel_sq: delta [C, n, O, L]; a absent or [n, O, L] of delta's dtype and device.
inline void check_fisher_channel_sq(const at::Tensor& delta, const c10::optional<at::Tensor>& a) {
  TORCH_CHECK(delta.dim() == 4, "delta must be [C, n, O, L], got ", delta.sizes());
  check_float(delta, "delta");
  if (a.has_value()) {
    check_shape(*a, delta.sizes().slice(1), "a");
    TORCH_CHECK(a->scalar_type() == delta.scalar_type(), "a and delta must have one dtype");
    check_same_device(delta, *a, "delta", "a");
  }
}

}  // namespace fishermask_ext
