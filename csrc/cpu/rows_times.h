// The CPU's register-blocked skinny product out = x · uv for rows of x (float32 or float64
// storage) against a packed float64 matrix uv of a few columns, with float64 arithmetic
// (float32 rows are converted in registers: float32 is a storage format only,
// docs/ALGORITHM.md "Precision"). Used by the greedy step (W, Z = X̃·[u v]) and the commit
// (u = P x̃ᵀ, v = P F u).
#pragma once
#include <ATen/ATen.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "cpu/isa.h"

namespace fishermask_ext {
namespace cpu {

// Register blocking of the product, one per instruction set, so that the accumulators, one row
// of uv and a broadcast x fit the register file: 32 zmm on AVX-512, 16 ymm on AVX2, 16 xmm
// without. kLanes doubles per vector; kRows rows of x per block; up to kMaxNB full column
// blocks per pass; a narrow kTail-column last block (0: pad to whole blocks instead).
// kConvertTiles: float32 rows are converted a tile at a time before the FMAs (see
// rows_times_uv); without it each value is converted where it is broadcast.
struct BlockingV4 {
  static constexpr int kLanes = 8, kRows = 8, kMaxNB = 3, kTail = 4;
  static constexpr bool kConvertTiles = true;
};
struct BlockingV3 {
  static constexpr int kLanes = 4, kRows = 2, kMaxNB = 5, kTail = 0;
  static constexpr bool kConvertTiles = false;
};
struct BlockingBase {
  static constexpr int kLanes = 2, kRows = 2, kMaxNB = 5, kTail = 0;
  static constexpr bool kConvertTiles = false;
};

template <Isa I>
struct RowsBlockingOf { using type = BlockingBase; };
template <>
struct RowsBlockingOf<Isa::v4> { using type = BlockingV4; };
template <>
struct RowsBlockingOf<Isa::v3> { using type = BlockingV3; };
// The register blocking of the skinny product for instruction set I.
template <Isa I>
using RowsBlocking = typename RowsBlockingOf<I>::type;

// acc[r] += Σ_{d < n} x[r·ldx + d] · uv[d, :] for kRows rows: the FMA loop of rows_times_uv.
// A float64 x is a memory operand of the FMA (AVX-512: an embedded broadcast).
template <class Bk, int NB, int TL, typename T, typename V, typename VT>
FM_INLINE void fma_rows(const T* x, int64_t ldx, int64_t n, const double* uv, int64_t ldu,
                        V (&acc)[Bk::kRows][NB > 0 ? NB : 1], VT (&tacc)[Bk::kRows]) {
  using VU = typename Lanes<double, Bk::kLanes>::unaligned;
  using VTU = typename Lanes<double, (TL > 0 ? TL : 1)>::unaligned;
  for (int64_t d = 0; d < n; ++d) {
    const double* ud = uv + d * ldu;
    V u[NB > 0 ? NB : 1];
    VT ut;
    for (int b = 0; b < NB; ++b) u[b] = *reinterpret_cast<const VU*>(ud + b * Bk::kLanes);
    if constexpr (TL > 0) ut = *reinterpret_cast<const VTU*>(ud + NB * Bk::kLanes);
    for (int r = 0; r < Bk::kRows; ++r) {
      const double xv = static_cast<double>(x[r * ldx + d]);   // float32 storage, float64 math
      for (int b = 0; b < NB; ++b) acc[r][b] += xv * u[b];
      if constexpr (TL > 0) tacc[r] += xv * ut;
    }
  }
}

// Columns of float32 rows converted to float64 per tile of rows_times_uv: a [kRows, kTile]
// float64 tile is 8 KB at most, so it stays in L1 while the FMAs read it.
constexpr int64_t kTile = 128;

// out[r, c] = Σ_d x[r, d] · uv[d, c] for kRows rows of x ([kRows, D] row-major), the NB full
// column blocks starting at uv (row stride ldu) and, when TL > 0, one narrow block of TL columns
// after them. kRows·(NB + 1) independent accumulators hide the FMA latency; uv stays in L2.
template <class Bk, typename T, int NB, int TL>
FM_INLINE void rows_times_uv(const T* x, int64_t D, const double* uv, int64_t ldu, double* out,
                             int64_t ldo) {
  constexpr int kR = Bk::kRows, kL = Bk::kLanes;
  using V = typename Lanes<double, kL>::type;
  using VT = typename Lanes<double, (TL > 0 ? TL : 1)>::type;
  using VU = typename Lanes<double, kL>::unaligned;
  using VTU = typename Lanes<double, (TL > 0 ? TL : 1)>::unaligned;
  V acc[kR][NB > 0 ? NB : 1] = {};
  VT tacc[kR] = {};
  if constexpr (std::is_same_v<T, double> || !Bk::kConvertTiles) {
    fma_rows<Bk, NB, TL>(x, D, D, uv, ldu, acc, tacc);
  } else {
    // float32 storage, float64 math (docs/ALGORITHM.md "Precision"). On AVX-512, converting a
    // tile first (packed conversions) keeps the FMA loop that of float64, whose broadcasts are
    // memory operands: a scalar convert and broadcast per row and column adds two instructions
    // per 3 FMAs. The next tiles are prefetched, as the hardware would for a plain stream.
    // Measured at N = 5,000, C = 10, D = 1,402 on 2 Zen 4 cores: a float32 greedy step of
    // select_batch 75 ms -> 57 ms (float64: 44 ms); the op alone 52 ms with tiles, 44 ms with
    // the prefetch too (float64: 39 ms). On AVX2 the tiles were slower (78 -> 93 ms), hence
    // kConvertTiles.
    alignas(64) double tile[kR * kTile];
    for (int64_t d0 = 0; d0 < D; d0 += kTile) {
      const int64_t n = std::min(kTile, D - d0);
      for (int r = 0; r < kR; ++r) {
        const T* xr = x + r * D + d0;
        for (int64_t j = 0; j < n; ++j) tile[r * kTile + j] = static_cast<double>(xr[j]);
        // Two tiles ahead, a 64-byte line at a time; a prefetch past the end never faults.
        for (int64_t j = 0; j < kTile; j += 16) __builtin_prefetch(xr + 2 * kTile + j);
      }
      fma_rows<Bk, NB, TL>(tile, kTile, n, uv + d0 * ldu, ldu, acc, tacc);
    }
  }
  for (int r = 0; r < kR; ++r) {
    for (int b = 0; b < NB; ++b) *reinterpret_cast<VU*>(out + r * ldo + b * kL) = acc[r][b];
    if constexpr (TL > 0) *reinterpret_cast<VTU*>(out + r * ldo + NB * kL) = tacc[r];
  }
}

// Column layout of a packed uv: nb full blocks of kLanes, then a narrow block of kTail columns
// when `tail` (there a kTail block is half the FMA work of a zero-padded full one).
struct PackLayout {
  int64_t nb;
  int tail;    // columns of the narrow last block, 0 if none
  int lanes;
  int64_t width() const { return nb * lanes + tail; }
};

template <class Bk>
PackLayout pack_layout(int64_t cols) {
  const int64_t rem = cols % Bk::kLanes;
  if (Bk::kTail > 0 && rem > 0 && rem <= Bk::kTail) return {cols / Bk::kLanes, Bk::kTail, Bk::kLanes};
  return {(cols + Bk::kLanes - 1) / Bk::kLanes, 0, Bk::kLanes};
}

inline PackLayout pack_layout_for(Isa isa, int64_t cols) {
  return on_isa(isa, [&](auto tag) { return pack_layout<RowsBlocking<tag.value>>(cols); });
}

// NB full blocks and (with a tail) the narrow one, NB a run-time value up to kMaxNB.
template <class Bk, typename T, int TL>
FM_INLINE void rows_times_nb(int nb, const T* x, int64_t D, const double* ub, int64_t ldu,
                             double* ob) {
  switch (nb) {
    case 0: if constexpr (TL > 0) rows_times_uv<Bk, T, 0, TL>(x, D, ub, ldu, ob, ldu); break;
    case 1: rows_times_uv<Bk, T, 1, TL>(x, D, ub, ldu, ob, ldu); break;
    case 2: rows_times_uv<Bk, T, 2, TL>(x, D, ub, ldu, ob, ldu); break;
    case 3: rows_times_uv<Bk, T, 3, TL>(x, D, ub, ldu, ob, ldu); break;
    case 4: if constexpr (Bk::kMaxNB >= 4) rows_times_uv<Bk, T, 4, TL>(x, D, ub, ldu, ob, ldu); break;
    default: if constexpr (Bk::kMaxNB >= 5) rows_times_uv<Bk, T, 5, TL>(x, D, ub, ldu, ob, ldu); break;
  }
}

// All columns for kRows rows: passes of up to kMaxNB full blocks, the narrow block in the last.
template <class Bk, typename T>
FM_INLINE void rows_times_all_uv(const T* x, int64_t D, const double* uv, PackLayout lay,
                                 double* out) {
  const int64_t ldu = lay.width();
  int64_t b = 0;
  do {
    const int nbp = static_cast<int>(std::min<int64_t>(Bk::kMaxNB, lay.nb - b));
    const bool last = b + nbp >= lay.nb;
    const double* ub = uv + b * Bk::kLanes;
    double* ob = out + b * Bk::kLanes;
    if constexpr (Bk::kTail > 0) {
      if (last && lay.tail > 0) {
        rows_times_nb<Bk, T, Bk::kTail>(nbp, x, D, ub, ldu, ob);
        b += nbp;
        continue;
      }
    }
    rows_times_nb<Bk, T, 0>(nbp, x, D, ub, ldu, ob);
    b += nbp;
  } while (b < lay.nb);
}

// out[r, :] = x[r, :] · uv for `rows` rows of x ([rows, D]): kRows at a time, a short last
// block through a zero-padded copy (`pad`: scratch, grown on first use). out: [rows, width].
template <class Bk, typename T>
FM_INLINE void rows_times_packed(const T* x, int64_t rows, int64_t D, const double* uv,
                                 PackLayout lay, double* out, std::vector<T>& pad) {
  constexpr int kR = Bk::kRows;
  const int64_t ldu = lay.width(), full = rows / kR * kR;
  for (int64_t r = 0; r < full; r += kR)
    rows_times_all_uv<Bk, T>(x + r * D, D, uv, lay, out + r * ldu);
  if (full < rows) {
    pad.assign(kR * D, T(0));
    std::memcpy(pad.data(), x + full * D, (rows - full) * D * sizeof(T));
    std::vector<double> tmp(kR * ldu);
    rows_times_all_uv<Bk, T>(pad.data(), D, uv, lay, tmp.data());
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
