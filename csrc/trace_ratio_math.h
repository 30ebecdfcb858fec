// The per-candidate C×C work of one greedy step (docs/ALGORITHM.md, "The fast update"), written
// once for both devices. The value type V is one candidate (double: a CUDA thread) or several
// candidates side by side (the CPU's SIMD-lane vectors, csrc/cpu/trace_ratio_step_cpu.cpp), so
// CPU tests exercise the arithmetic the GPU runs. All matrices are C×C row-major float64 values
// reached through M (a V* or a strided view, anything with operator[](int) -> V&).
//
// kC is C when it is known at compile time (the loops then unroll), 0 for a run-time C.
//
// Share says which rows (or columns) of each C×C product the caller computes: all of them
// (Serial, the default: a CPU lane group, or one CUDA thread), or one lane's share of a group of
// CUDA lanes working on one candidate together (csrc/cuda/trace_ratio_kernels.cuh), with the
// matrices in the group's shared memory and share.sync() between the stages that read what
// other lanes wrote. Every lane computes the same values in the same order as Serial does.
#pragma once
#include <cmath>
#include <limits>

#ifdef __CUDACC__
#define FM_HD __host__ __device__ inline
#else
// Forced inlining: the CPU callers are compiled once per SIMD target (target_clones), and only
// inlined code is compiled with the caller's target.
#define FM_HD inline __attribute__((always_inline))
#endif

namespace fishermask_ext {

// Per value type: the lane-wise operations the math needs beyond + - * /.
//   Mask; all_lanes(); splat(x) (x in every lane); positive(v) (lanes with v > 0); both(m1, m2);
//   pick(m, a, b) (a where m, else b); sqrt(v); is_number(v) (lanes that are not NaN).
// The CPU specialises it for its lane vectors; a CUDA thread uses the scalar one below.
template <typename V>
struct LaneOps;

template <>
struct LaneOps<double> {
  using Mask = bool;
  FM_HD static Mask all_lanes() { return true; }
  FM_HD static double splat(double x) { return x; }
  FM_HD static Mask positive(double v) { return v > 0; }
  FM_HD static Mask both(Mask a, Mask b) { return a && b; }
  FM_HD static double pick(Mask m, double a, double b) { return m ? a : b; }
  FM_HD static double sqrt(double v) { return ::sqrt(v); }
  FM_HD static Mask is_number(double v) { return v == v; }
};

template <int kC>
FM_HD int dim(int c_runtime) { return kC > 0 ? kC : c_runtime; }

// Rows first, first + step, ... of every product; sync() orders the stages.
struct Serial {
  FM_HD int first() const { return 0; }
  FM_HD int step() const { return 1; }
  FM_HD void sync() const {}
};

// The rank-C commit update of one candidate, for the symmetric C×C S and Q of the commit:
//   A -= W S Wᵀ;   B -= W S Zᵀ + Z S Wᵀ - W S Q S Wᵀ
// as four products: T = W S; A -= T Wᵀ; G = Z - ½ T Q (in place of Z); B -= T Gᵀ + G Tᵀ.
// (T Gᵀ + G Tᵀ = T Zᵀ + Z Tᵀ - T Q Tᵀ, and T Zᵀ = W S Zᵀ, Z Tᵀ = Z S Wᵀ since S = Sᵀ.)
// a, b: the candidate's A_i, B_i (updated); w, z: its W_i = X̃_i u, Z_i = X̃_i v (z is
// overwritten with G); t: C·C values of scratch (left holding T).
template <int kC, typename V, typename M, typename Share = Serial>
FM_HD void commit_update(int c_runtime, M a, M b, M w, M z, M t, const double* S,
                         const double* Q, Share share = {}) {
  const int C = dim<kC>(c_runtime);
  for (int r = share.first(); r < C; r += share.step())
    for (int c = 0; c < C; ++c) {
      V s = w[r * C] * S[c];
      for (int k = 1; k < C; ++k) s += w[r * C + k] * S[k * C + c];
      t[r * C + c] = s;                                                  // T = W S
    }
  share.sync();
  for (int r = share.first(); r < C; r += share.step())
    for (int c = 0; c < C; ++c) {
      V s = t[r * C] * w[c * C];
      for (int k = 1; k < C; ++k) s += t[r * C + k] * w[c * C + k];
      a[r * C + c] -= s;                                                 // A -= T Wᵀ
    }
  for (int r = share.first(); r < C; r += share.step())
    for (int c = 0; c < C; ++c) {
      V s = t[r * C] * Q[c];
      for (int k = 1; k < C; ++k) s += t[r * C + k] * Q[k * C + c];
      z[r * C + c] -= 0.5 * s;                                           // G = Z - ½ T Q
    }
  share.sync();
  // B stays exactly symmetric: each (r, c), c >= r, is computed once and mirrored (by the
  // owner of row r: no other lane touches row r's columns >= r or column r's rows > r).
  for (int r = share.first(); r < C; r += share.step())
    for (int c = r; c < C; ++c) {
      V s = t[r * C] * z[c * C] + z[r * C] * t[c * C];
      for (int k = 1; k < C; ++k) s += t[r * C + k] * z[c * C + k] + z[r * C + k] * t[c * C + k];
      const V v = b[r * C + c] - s;                                      // B -= T Gᵀ + G Tᵀ
      b[r * C + c] = v;
      b[c * C + r] = v;
    }
  share.sync();
}

// In place lower Cholesky of l (its upper triangle is left as is). Lanes whose matrix is not
// positive definite are cleared in `ok` and carried on with unit pivots, so every lane stays
// finite. inv_diag[j] = 1 / L[j, j].
// Every lane computes each pivot (so all hold `ok`); the owner of row j stores it, and each lane
// updates its own rows below.
template <int kC, typename V, typename M, typename Share = Serial>
FM_HD void cholesky(int c_runtime, M l, M inv_diag, typename LaneOps<V>::Mask& ok,
                    Share share = {}) {
  using Ops = LaneOps<V>;
  const int C = dim<kC>(c_runtime);
  for (int j = 0; j < C; ++j) {
    V d = l[j * C + j];
    for (int k = 0; k < j; ++k) d -= l[j * C + k] * l[j * C + k];
    const auto pos = Ops::positive(d);
    ok = Ops::both(ok, pos);
    d = Ops::sqrt(Ops::pick(pos, d, Ops::splat(1.0)));
    const V inv = 1.0 / d;
    share.sync();                                  // every lane has read l[j, j]
    if (j >= share.first() && (j - share.first()) % share.step() == 0) {
      l[j * C + j] = d;
      inv_diag[j] = inv;
    }
    for (int i = share.first(); i < C; i += share.step()) {
      if (i <= j) continue;
      V s = l[i * C + j];
      for (int k = 0; k < j; ++k) s -= l[i * C + k] * l[j * C + k];
      l[i * C + j] = s * inv;
    }
    share.sync();
  }
}

// In place y = L⁻¹ y for every column of y (L from cholesky()); a lane solves its columns.
template <int kC, typename V, typename M, typename Share = Serial>
FM_HD void solve_lower(int c_runtime, M l, M inv_diag, M y, Share share = {}) {
  const int C = dim<kC>(c_runtime);
  for (int c = share.first(); c < C; c += share.step())
    for (int r = 0; r < C; ++r) {
      V s = y[r * C + c];
      for (int k = 0; k < r; ++k) s -= l[r * C + k] * y[k * C + c];
      y[r * C + c] = s * inv_diag[r];
    }
  share.sync();
}

// score = σ · tr((I + σA)⁻¹ B), the trace-ratio gain of adding (σ = +1) or the loss of removing
// (σ = -1) the candidate (Woodbury; docs/ALGORITHM.md, step E). With I + σA = L Lᵀ,
// tr((L Lᵀ)⁻¹ B) = tr(L⁻¹ B L⁻ᵀ), two triangular solves. Lanes where I + σA is not positive
// definite, or where the trace is NaN, get -inf: they can never be picked.
// l, y, yt: C·C values of scratch each; inv_diag: C values.
// With a Share of several lanes, every lane returns the score.
template <int kC, typename V, typename M, typename Share = Serial>
FM_HD V trace_ratio_score(int c_runtime, M a, M b, double sigma, M l, M y, M yt, M inv_diag,
                          Share share = {}) {
  using Ops = LaneOps<V>;
  const int C = dim<kC>(c_runtime);
  for (int r = share.first(); r < C; r += share.step()) {
    for (int c = 0; c < C; ++c) {
      l[r * C + c] = sigma * a[r * C + c];
      y[r * C + c] = b[r * C + c];
    }
    l[r * C + r] += 1.0;
  }
  share.sync();
  auto ok = Ops::all_lanes();
  cholesky<kC, V>(C, l, inv_diag, ok, share);
  solve_lower<kC, V>(C, l, inv_diag, y, share);                        // L⁻¹ B
  for (int r = share.first(); r < C; r += share.step())
    for (int c = 0; c < C; ++c) yt[r * C + c] = y[c * C + r];          // (L⁻¹ B)ᵀ
  share.sync();
  solve_lower<kC, V>(C, l, inv_diag, yt, share);                       // L⁻¹ B L⁻ᵀ (its trace)
  V tr = yt[0];
  for (int j = 1; j < C; ++j) tr += yt[j * C + j];
  tr = sigma * tr;
  ok = Ops::both(ok, Ops::is_number(tr));
  return Ops::pick(ok, tr, Ops::splat(-std::numeric_limits<double>::infinity()));
}

}  // namespace fishermask_ext
