// The CPU's register-blocked skinny product out = x · uv for rows of x (float32 or float64
// storage) against a packed float64 matrix uv of a few columns, with float64 arithmetic
// (float32 rows are converted in registers: float32 is a storage format only,
// docs/ALGORITHM.md "Precision"). Used by the greedy step (W, Z = X̃·[u v]) and the commit
// (u = P x̃ᵀ, v = P F u).
#pragma once
#include <ATen/ATen.h>

#include <algorithm>
#include <cstring>
#include <vector>

#define FM_INLINE inline __attribute__((always_inline))

namespace fishermask_ext {
namespace cpu {

constexpr int kLanes = 8;  // columns of uv per full register block
constexpr int kTail = 4;   // columns of the narrow last block (see pack_layout)
constexpr int kRows = 8;   // rows of x per register block

// L values of T as one SIMD value (GCC vector extension: one register on AVX-512, split into
// several on narrower targets).
template <typename T, int L>
struct Lanes {
  typedef T type __attribute__((vector_size(L * sizeof(T))));
};

// out[r, c] = Σ_d x[r, d] · uv[d, c] for kRows rows of x ([kRows, D] row-major), the NB full
// column blocks starting at uv (row stride ldu) and, when TL > 0, one narrow block of TL columns
// after them. kRows·(NB + 1) independent accumulators hide the FMA latency; uv stays in L2.
template <typename T, int NB, int TL>
FM_INLINE void rows_times_uv(const T* x, int64_t D, const double* uv, int64_t ldu, double* out,
                             int64_t ldo) {
  using V = Lanes<double, kLanes>::type;
  using VT = typename Lanes<double, (TL > 0 ? TL : 1)>::type;
  V acc[kRows][NB > 0 ? NB : 1] = {};
  VT tacc[kRows] = {};
  for (int64_t d = 0; d < D; ++d) {
    const double* ud = uv + d * ldu;
    V u[NB > 0 ? NB : 1];
    VT ut;
    for (int b = 0; b < NB; ++b) std::memcpy(&u[b], ud + b * kLanes, sizeof(V));
    if constexpr (TL > 0) std::memcpy(&ut, ud + NB * kLanes, sizeof(VT));
    for (int r = 0; r < kRows; ++r) {
      const double xv = static_cast<double>(x[r * D + d]);   // float32 storage, float64 math
      for (int b = 0; b < NB; ++b) acc[r][b] += xv * u[b];
      if constexpr (TL > 0) tacc[r] += xv * ut;
    }
  }
  for (int r = 0; r < kRows; ++r) {
    for (int b = 0; b < NB; ++b) std::memcpy(out + r * ldo + b * kLanes, &acc[r][b], sizeof(V));
    if constexpr (TL > 0) std::memcpy(out + r * ldo + NB * kLanes, &tacc[r], sizeof(VT));
  }
}

// Column layout of a packed uv: nb full blocks of kLanes, then a narrow block of kTail columns
// when `tail` (a kTail block is half the FMA work of a zero-padded full one).
struct PackLayout {
  int64_t nb;
  bool tail;
  int64_t width() const { return nb * kLanes + (tail ? kTail : 0); }
};

inline PackLayout pack_layout(int64_t cols) {
  const int64_t rem = cols % kLanes;
  if (rem > 0 && rem <= kTail) return {cols / kLanes, true};
  return {(cols + kLanes - 1) / kLanes, false};
}

// All columns for kRows rows: passes of up to 3 full blocks, the narrow block in the last one.
template <typename T>
FM_INLINE void rows_times_all_uv(const T* x, int64_t D, const double* uv, PackLayout lay,
                                 double* out) {
  const int64_t ldu = lay.width();
  int64_t b = 0;
  do {
    const int nbp = static_cast<int>(std::min<int64_t>(3, lay.nb - b));
    const bool last = b + nbp >= lay.nb;
    const double* ub = uv + b * kLanes;
    double* ob = out + b * kLanes;
    if (last && lay.tail) {
      switch (nbp) {
        case 0: rows_times_uv<T, 0, kTail>(x, D, ub, ldu, ob, ldu); break;
        case 1: rows_times_uv<T, 1, kTail>(x, D, ub, ldu, ob, ldu); break;
        case 2: rows_times_uv<T, 2, kTail>(x, D, ub, ldu, ob, ldu); break;
        default: rows_times_uv<T, 3, kTail>(x, D, ub, ldu, ob, ldu); break;
      }
    } else {
      switch (nbp) {
        case 1: rows_times_uv<T, 1, 0>(x, D, ub, ldu, ob, ldu); break;
        case 2: rows_times_uv<T, 2, 0>(x, D, ub, ldu, ob, ldu); break;
        default: rows_times_uv<T, 3, 0>(x, D, ub, ldu, ob, ldu); break;
      }
    }
    b += nbp;
  } while (b < lay.nb);
}

// out[r, :] = x[r, :] · uv for `rows` rows of x ([rows, D]): kRows at a time, a short last
// block through a zero-padded copy (`pad`: scratch, grown on first use). out: [rows, width].
template <typename T>
FM_INLINE void rows_times_packed(const T* x, int64_t rows, int64_t D, const double* uv,
                                 PackLayout lay, double* out, std::vector<T>& pad) {
  const int64_t ldu = lay.width(), full = rows / kRows * kRows;
  for (int64_t r = 0; r < full; r += kRows)
    rows_times_all_uv<T>(x + r * D, D, uv, lay, out + r * ldu);
  if (full < rows) {
    pad.assign(kRows * D, T(0));
    std::memcpy(pad.data(), x + full * D, (rows - full) * D * sizeof(T));
    std::vector<double> tmp(kRows * ldu);
    rows_times_all_uv<T>(pad.data(), D, uv, lay, tmp.data());
    std::memcpy(out + full * ldu, tmp.data(), (rows - full) * ldu * sizeof(double));
  }
}

// uv [D, cols] f64 as [D, lay.width()] row-major, zero-padded to the register blocks.
inline at::Tensor pack_uv(const at::Tensor& uv, PackLayout lay) {
  auto packed = at::zeros({uv.size(0), lay.width()}, uv.options());
  packed.narrow(1, 0, uv.size(1)).copy_(uv);
  return packed;
}

}  // namespace cpu
}  // namespace fishermask_ext
