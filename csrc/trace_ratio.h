// The per-candidate work of one greedy step (ALGORITHM.md, "The fast update"), run by the CUDA
// kernel (one thread per candidate). The CPU kernel (csrc/cpu/select_cpu.cpp, group_step) does
// the same arithmetic on 8 candidates at a time as SIMD lanes. All matrices are C×C, row-major,
// float64.
#pragma once
#include <cmath>
#include <limits>

#ifdef __CUDACC__
#define FM_HD __host__ __device__ inline
#else
#define FM_HD inline
#endif

namespace fishermask_ext {

// out = a · b            (a, b: C×C)
FM_HD void mm(int C, const double* a, const double* b, double* out) {
  for (int r = 0; r < C; ++r)
    for (int c = 0; c < C; ++c) {
      double s = 0;
      for (int k = 0; k < C; ++k) s += a[r * C + k] * b[k * C + c];
      out[r * C + c] = s;
    }
}

// acc += alpha · a · bᵀ  (a, b: C×C)
FM_HD void add_mmt(int C, double alpha, const double* a, const double* b, double* acc) {
  for (int r = 0; r < C; ++r)
    for (int c = 0; c < C; ++c) {
      double s = 0;
      for (int k = 0; k < C; ++k) s += a[r * C + k] * b[c * C + k];
      acc[r * C + c] += alpha * s;
    }
}

// In place lower Cholesky of the C×C matrix m (upper triangle left as is); false if not SPD.
FM_HD bool cholesky(int C, double* m) {
  for (int j = 0; j < C; ++j) {
    double d = m[j * C + j];
    for (int k = 0; k < j; ++k) d -= m[j * C + k] * m[j * C + k];
    if (!(d > 0)) return false;
    d = sqrt(d);
    m[j * C + j] = d;
    for (int i = j + 1; i < C; ++i) {
      double s = m[i * C + j];
      for (int k = 0; k < j; ++k) s -= m[i * C + k] * m[j * C + k];
      m[i * C + j] = s / d;
    }
  }
  return true;
}

// In place y = L⁻¹ y for every column of the C×C matrix y (L lower, from cholesky()).
FM_HD void solve_lower_columns(int C, const double* L, double* y) {
  for (int c = 0; c < C; ++c)
    for (int r = 0; r < C; ++r) {
      double s = y[r * C + c];
      for (int k = 0; k < r; ++k) s -= L[r * C + k] * y[k * C + c];
      y[r * C + c] = s / L[r * C + r];
    }
}

// Updates A_i, B_i with the committed direction (when W, Z are given), then returns
// sigma · tr((I + sigma·A_i)⁻¹ B_i), or -inf when I + sigma·A_i is not positive definite.
//   A -= W S Wᵀ;  B -= W S Zᵀ + Z S Wᵀ - (W S) Q (W S)ᵀ
// computed for symmetric S, Q in four C×C products: T = W S, A -= T Wᵀ, G = Z - ½ T Q,
// E = T Gᵀ, B -= E + Eᵀ (E + Eᵀ = T Zᵀ + Z Tᵀ - T Q Tᵀ).
// A, B: this candidate's C×C blocks (updated in place); W, Z: its C×C blocks of X̃·[u v];
// S, Q: the commit's symmetric C×C matrices; work: 3·C·C doubles of scratch.
FM_HD double candidate_step(int C, double* A, double* B, const double* W, const double* Z,
                            const double* S, const double* Q, double sigma, double* work) {
  double* t1 = work;
  double* t2 = work + C * C;
  double* t3 = work + 2 * C * C;
  if (W != nullptr) {
    mm(C, W, S, t1);                                           // T = W S
    add_mmt(C, -1.0, t1, W, A);                                // A -= T Wᵀ
    mm(C, t1, Q, t2);                                          // T Q
    for (int k = 0; k < C * C; ++k) t2[k] = Z[k] - 0.5 * t2[k];  // G = Z - ½ T Q
    for (int k = 0; k < C * C; ++k) t3[k] = 0.0;
    add_mmt(C, 1.0, t1, t2, t3);                               // E = T Gᵀ
    for (int r = 0; r < C; ++r)
      for (int c = 0; c < C; ++c) B[r * C + c] -= t3[r * C + c] + t3[c * C + r];
  }
  for (int k = 0; k < C * C; ++k) t1[k] = sigma * A[k];
  for (int k = 0; k < C; ++k) t1[k * C + k] += 1.0;
  if (!cholesky(C, t1)) return -std::numeric_limits<double>::infinity();
  for (int k = 0; k < C * C; ++k) t2[k] = B[k];
  solve_lower_columns(C, t1, t2);                                    // L⁻¹ B
  for (int r = 0; r < C; ++r)
    for (int c = 0; c < C; ++c) t3[r * C + c] = t2[c * C + r];       // (L⁻¹ B)ᵀ
  solve_lower_columns(C, t1, t3);                                    // L⁻¹ B L⁻ᵀ
  double tr = 0;
  for (int k = 0; k < C; ++k) tr += t3[k * C + k];
  return sigma * tr;
}

}  // namespace fishermask_ext
