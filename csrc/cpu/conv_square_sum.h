// The CPU's fused step-A product for Conv2d weights (fisher_conv2d_sq, docs/ALGORITHM.md):
//
//   acc[o, k] += Σ_p Σ_c ( Σ_l δ[c, p, o, l] · patch[p, l, k] )²
//
// for one chunk of samples p, without ever storing a per-sample gradient. The inner sum is a
// register tile of kClasses classes × kVecs vectors of columns k, squared and summed over the
// classes in registers, then added to a float64 accumulator. Why not ATen's batched GEMM and a
// second pass over its output, as on CUDA: on the narrow ResNet-18, most weights sit in layers
// whose L (output positions) is 16 or 64, so the GEMM writes C·|θ| gradients per sample for
// only 2L FLOPs each, and writing them and reading them back for the squares cost more time
// than the FLOPs on the CPU's memory bandwidth (RESULTS-embed.md, step A profile).
#pragma once
#include <ATen/ATen.h>

#include <algorithm>
#include <cstdint>

#include "cpu/isa.h"

namespace fishermask_ext {
namespace cpu {

// Register blocking per instruction set: kClasses·kVecs accumulators, kVecs patch vectors and
// one broadcast δ fit the register file (25 of 32 zmm; 13 of 16 ymm or xmm). kLanes: T values
// per vector. C = 10 runs as two blocks of 5 classes on AVX-512.
template <typename T>
struct ConvBlockV4 {
  static constexpr int kLanes = 64 / sizeof(T), kClasses = 5, kVecs = 4;
};
template <typename T>
struct ConvBlockV3 {
  static constexpr int kLanes = 32 / sizeof(T), kClasses = 3, kVecs = 3;
};
template <typename T>
struct ConvBlockBase {
  static constexpr int kLanes = 16 / sizeof(T), kClasses = 3, kVecs = 3;
};

// One chunk of the product. delta: the chunk's first sample, with each [O, L] block (one class
// of one sample) contiguous, classes sc and samples sn elements apart; patches [P, G, L, Kp]
// (transposed im2col, columns K..Kp zero); acc [O, Kp] float64. O = G·Og output channels.
template <typename T>
struct ConvChunk {
  const T* delta;
  int64_t sc, sn;
  const T* patches;
  double* acc;
  int64_t P, G, Og, C, L, Kp;
};

// s[v] += Σ_{r < MR} (Σ_l d[r·ldd + l] · pt[l·ldp + v·W, +W))² for v < NV: MR classes of one
// sample and output channel against NV vectors of patch columns.
template <class Bk, int MR, int NV, typename T, typename V>
FM_INLINE void class_block(const T* d, int64_t ldd, const T* pt, int64_t ldp, int64_t L,
                           V (&s)[NV]) {
  constexpr int W = Bk::kLanes;
  using VU = typename Lanes<T, W>::unaligned;
  V t[MR][NV] = {};
  for (int64_t l = 0; l < L; ++l) {
    V b[NV];
    for (int v = 0; v < NV; ++v) b[v] = *reinterpret_cast<const VU*>(pt + l * ldp + v * W);
    for (int r = 0; r < MR; ++r) {
      const T dv = d[r * ldd + l];  // one δ broadcast against NV·W columns
      for (int v = 0; v < NV; ++v) t[r][v] += dv * b[v];
    }
  }
  // t holds MR finished per-sample gradient entries per column.
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) s[v] += t[r][v] * t[r][v];
}

// class_block with a runtime MR ∈ [1, Bk::kClasses]: every MR is compiled, so the accumulators
// of each stay in registers.
template <class Bk, int MR, int NV, typename T, typename V>
FM_INLINE void pick_rows(int mr, const T* d, int64_t ldd, const T* pt, int64_t ldp, int64_t L,
                         V (&s)[NV]) {
  if constexpr (MR > 0) {
    if (mr == MR) return class_block<Bk, MR, NV>(d, ldd, pt, ldp, L, s);
    pick_rows<Bk, MR - 1, NV>(mr, d, ldd, pt, ldp, L, s);
  }
}

// acc[0, NV·W) += Σ_c (Σ_l δ[c, l] · pt[l, ·])² over all C classes of one sample and output
// channel (d: its class 0, classes sc apart), in near-equal blocks of at most kClasses
// (C = 10 as 5 + 5, not 5 + 5 + 0). The squares of the C classes are summed in T, as the
// GEMM's own sums are, and then added once to the float64 accumulator, which sums the many
// samples' terms.
template <class Bk, int NV, typename T>
FM_INLINE void channel_columns(const T* d, int64_t sc, int64_t C, const T* pt, int64_t ldp,
                               int64_t L, double* acc) {
  constexpr int W = Bk::kLanes;
  using V = typename Lanes<T, W>::type;
  V s[NV] = {};
  const int64_t blocks = (C + Bk::kClasses - 1) / Bk::kClasses;
  for (int64_t b = 0, c = 0; b < blocks; ++b) {
    const int mr = static_cast<int>(C / blocks + (b < C % blocks));
    pick_rows<Bk, Bk::kClasses, NV>(mr, d + c * sc, sc, pt, ldp, L, s);
    c += mr;
  }
  for (int v = 0; v < NV; ++v)
    for (int j = 0; j < W; ++j) acc[v * W + j] += static_cast<double>(s[v][j]);
}

template <class Bk, int NV, typename T>
FM_INLINE void pick_columns(int nv, const T* d, int64_t sc, int64_t C, const T* pt, int64_t ldp,
                            int64_t L, double* acc) {
  if constexpr (NV > 0) {
    if (nv == NV) return channel_columns<Bk, NV>(d, sc, C, pt, ldp, L, acc);
    pick_columns<Bk, NV - 1>(nv, d, sc, C, pt, ldp, L, acc);
  }
}

// Column blocks of a tile row: the Kp / W vectors of columns in near-equal blocks of at most
// kVecs (9 vectors as 3 + 3 + 3, not 4 + 4 + 1), so that tiles cost the same and a static split
// of the tiles over the threads is balanced.
struct ColumnBlocks {
  int64_t count, base, extra;  // block kb: base + (kb < extra) vectors
  int64_t first(int64_t kb) const { return kb * base + std::min(kb, extra); }
  int vecs(int64_t kb) const { return static_cast<int>(base + (kb < extra)); }
};

inline ColumnBlocks column_blocks(int64_t vectors, int max_vecs) {
  const int64_t count = (vectors + max_vecs - 1) / max_vecs;
  return count == 0 ? ColumnBlocks{0, 0, 0} : ColumnBlocks{count, vectors / count, vectors % count};
}

// Tiles [t0, t1) of one chunk; tile t = kb·O + o is output channel o and column block kb. Each
// tile belongs to one task, and every task adds its terms in the same order (samples, then
// class blocks), so the result does not depend on the threads. Within a run of tiles of one
// column block, the samples are the outer loop: a sample's patch panel [L, vecs·W] is read
// from cache by every output channel.
template <class Bk, typename T>
FM_INLINE void conv_tiles(const ConvChunk<T>& j, int64_t t0, int64_t t1) {
  constexpr int W = Bk::kLanes;
  const int64_t O = j.G * j.Og;
  const ColumnBlocks cb = column_blocks(j.Kp / W, Bk::kVecs);
  for (int64_t t = t0; t < t1;) {
    const int64_t kb = t / O, o_lo = t % O, o_hi = std::min(O, o_lo + (t1 - t));
    t += o_hi - o_lo;
    const int64_t k0 = cb.first(kb) * W;
    const int nv = cb.vecs(kb);
    for (int64_t p = 0; p < j.P; ++p)
      for (int64_t o = o_lo; o < o_hi; ++o)
        pick_columns<Bk, Bk::kVecs>(nv, j.delta + p * j.sn + o * j.L, j.sc, j.C,
                                    j.patches + (p * j.G + o / j.Og) * j.L * j.Kp + k0, j.Kp,
                                    j.L, j.acc + o * j.Kp + k0);
  }
}

template <Isa I, typename T>
struct ConvBlockingOf { using type = ConvBlockBase<T>; };
template <typename T>
struct ConvBlockingOf<Isa::v4, T> { using type = ConvBlockV4<T>; };
template <typename T>
struct ConvBlockingOf<Isa::v3, T> { using type = ConvBlockV3<T>; };
// The blocking of the conv weight-square product for instruction set I.
template <Isa I, typename T>
using ConvBlocking = typename ConvBlockingOf<I, T>::type;

// The lanes per vector and the column blocks of the blocking this CPU runs (see cpu_isa()):
// the caller pads K to a multiple of the lanes and counts the tiles with the blocks.
template <typename T>
inline int conv_lanes() {
  return on_isa(cpu_isa(), [](auto tag) { return ConvBlocking<tag.value, T>::kLanes; });
}

template <typename T>
inline ColumnBlocks conv_column_blocks(int64_t Kp) {
  return on_isa(cpu_isa(), [&](auto tag) {
    using BK = ConvBlocking<tag.value, T>;
    return column_blocks(Kp / BK::kLanes, BK::kVecs);
  });
}

// One compiled copy of conv_tiles per instruction set and type.
#define FM_CONV_TILES_T(TARGET, I, T)                                                         \
  TARGET inline void conv_tiles_isa(IsaTag<I>, const ConvChunk<T>& j, int64_t t0,            \
                                    int64_t t1) {                                            \
    conv_tiles<ConvBlocking<I, T>>(j, t0, t1);                                               \
  }
#define FM_CONV_TILES(TARGET, I) FM_CONV_TILES_T(TARGET, I, float) FM_CONV_TILES_T(TARGET, I, double)
FM_FOR_EACH_ISA(FM_CONV_TILES)
#undef FM_CONV_TILES
#undef FM_CONV_TILES_T

template <typename T>
inline void run_conv_tiles(const ConvChunk<T>& j, int64_t t0, int64_t t1) {
  on_isa(cpu_isa(), [&](auto tag) { conv_tiles_isa(tag, j, t0, t1); });
}

}  // namespace cpu
}  // namespace fishermask_ext
