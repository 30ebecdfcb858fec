// The generic kernel of commit_direction, over ATen ops: every device without a kernel of its
// own runs it (CUDA included: its products are skinny f64 GEMMs that cuBLAS does well).
// Registered once, as CompositeExplicitAutograd; csrc/cpu/commit_direction_cpu.cpp overrides it
// on the CPU, and the tests reach this one there through a redispatch.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "checks.h"

namespace fishermask_ext {
namespace {

// P: [D, D] f64 symmetric (updated in place); F: [D, D] f64 symmetric; xt: [C, D] f64, the
// scaled embedding x̃ of the pick; S: [C, C] f64 symmetric. Returns [u v]: [D, 2C] f64.
at::Tensor commit_direction_generic(at::Tensor& P, const at::Tensor& F, const at::Tensor& xt,
                                    const at::Tensor& S) {
  check_commit_direction(P, F, xt, S);
  // Row-vector forms, uᵀ = x̃ P and vᵀ = uᵀ F P (P, F symmetric): wide products, no transposes.
  const auto ut = at::mm(xt, P);                                    // [C, D]
  const auto vt = at::mm(at::mm(ut, F), P);                         // [C, D]
  P.addmm_(at::mm(ut.t(), S), ut, 1.0, -1.0);                       // P -= u S uᵀ (Woodbury)
  return at::cat({ut, vt}, 0).t().contiguous();
}

}  // namespace

TORCH_LIBRARY_IMPL(fishermask_ext, CompositeExplicitAutograd, m) {
  m.impl("commit_direction", &commit_direction_generic);
}

}  // namespace fishermask_ext
