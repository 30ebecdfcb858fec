// CPU kernel of commit_direction (docs/ALGORITHM.md, "The fast update"): u = P x̃ᵀ, v = P F u
// and P -= u S uᵀ in three streaming passes over the D×D matrices through the register-blocked
// product (BLAS spends most of an M = C product on packing). The P update is fused into the
// pass that forms v, block of rows by block of rows, after that block's products are taken.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "checks.h"
#include "cpu/rows_times.h"

namespace fishermask_ext {
namespace cpu {
namespace {

// out [D, C] = M Vᵀ for rows [d0, d1) of M [D, D] (Vᵀ packed as [D, width]); with kUpdate,
// each block of rows is then updated, M[d, :] -= Σ_c a[d, c] · Ut[c, :], once its products
// are taken (so they see the old rows).
template <class Bk, bool kUpdate>
FM_INLINE void rows_times_vt(double* M, int64_t D,
                             const double* vp, PackLayout lay, int C, int64_t d0, int64_t d1,
                             double* out, const double* a, const double* Ut) {
  constexpr int64_t kSpan = 64;                   // rows per block: still in L2 for the update
  const int64_t ldu = lay.width();
  std::vector<double> ob(kSpan * ldu), pad;
  for (int64_t r0 = d0; r0 < d1; r0 += kSpan) {
    const int64_t r1 = std::min(d1, r0 + kSpan);
    rows_times_packed<Bk, double>(M + r0 * D, r1 - r0, D, vp, lay, ob.data(), pad);
    for (int64_t d = r0; d < r1; ++d)
      for (int c = 0; c < C; ++c) out[d * C + c] = ob[(d - r0) * ldu + c];
    if constexpr (kUpdate) {
      for (int64_t d = r0; d < r1; ++d) {
        double* m = M + d * D;
        for (int c = 0; c < C; ++c) {
          const double ac = a[d * C + c];
          const double* uc = Ut + c * D;
          for (int64_t f = 0; f < D; ++f) m[f] -= ac * uc[f];
        }
      }
    }
  }
}

// One compiled copy per instruction set (see cpu_isa()); a == nullptr: no update.
#define FM_ROWS_TIMES_VT(TARGET, I)                                                          \
  TARGET void rows_times_vt_isa(IsaTag<I>, double* M, int64_t D, const double* vp,           \
                                PackLayout lay, int C, int64_t d0, int64_t d1, double* out,  \
                                const double* a, const double* Ut) {                         \
    using BK = RowsBlocking<I>;                                                              \
    if (a == nullptr)                                                                        \
      rows_times_vt<BK, false>(M, D, vp, lay, C, d0, d1, out, nullptr, nullptr);             \
    else                                                                                     \
      rows_times_vt<BK, true>(M, D, vp, lay, C, d0, d1, out, a, Ut);                         \
  }
FM_FOR_EACH_ISA(FM_ROWS_TIMES_VT)

// out [D, C] = M Vᵀ for M [D, D] and V [C, D]; with a, Ut also M -= a · Ut, row block by block.
// M is written only with the update.
void times_vt(const at::Tensor& M, const at::Tensor& V, at::Tensor& out,
              const at::Tensor* a = nullptr, const at::Tensor* Ut = nullptr) {
  const int64_t D = M.size(0);
  const int C = static_cast<int>(V.size(0));
  const Isa isa = cpu_isa();
  const auto lay = pack_layout_for(isa, C);
  const auto vp = pack_uv(V.t(), lay);
  const double* v = vp.const_data_ptr<double>();
  double* o = out.data_ptr<double>();
  // Read-only unless there is an update (the const_cast only lets one signature serve both).
  double* m = a == nullptr ? const_cast<double*>(M.const_data_ptr<double>()) : M.data_ptr<double>();
  const double* ap = a == nullptr ? nullptr : a->const_data_ptr<double>();
  const double* up = Ut == nullptr ? nullptr : Ut->const_data_ptr<double>();
  at::parallel_for(0, D, 8, [&](int64_t b, int64_t e) {
    on_isa(isa, [&](auto tag) { rows_times_vt_isa(tag, m, D, v, lay, C, b, e, o, ap, up); });
  });
}

// P: [D, D] f64 (updated); F: [D, D] f64; xt: [C, D] f64; S: [C, C] f64 -> [D, 2C] f64.
at::Tensor commit_direction_cpu(at::Tensor& P, const at::Tensor& F_, const at::Tensor& xt_,
                                const at::Tensor& S_) {
  check_commit_direction(P, F_, xt_, S_);
  TORCH_CHECK(P.is_contiguous(), "P must be contiguous (it is updated in place)");
  const auto F = F_.contiguous(), xt = xt_.contiguous(), S = S_.contiguous();
  const int64_t D = P.size(0), C = xt.size(0);
  auto u = at::empty({D, C}, P.options());
  times_vt(P, xt, u);                             // u = P x̃ᵀ
  const auto ut = u.t().contiguous();
  auto w = at::empty({D, C}, P.options());
  times_vt(F, ut, w);                             // w = F u
  const auto a = at::mm(u, S).contiguous();       // u S
  auto v = at::empty({D, C}, P.options());
  times_vt(P, w.t(), v, &a, &ut);                 // v = P w, then P -= (u S) uᵀ by row blocks
  return at::cat({u, v}, 1);
}

}  // namespace
}  // namespace cpu

TORCH_LIBRARY_IMPL(fishermask_ext, CPU, m) {
  m.impl("commit_direction", &cpu::commit_direction_cpu);
}

}  // namespace fishermask_ext
