// The two CUDA kernels of a greedy step (docs/SCALING.md, "The CUDA step"), as templates:
//   wz_kernel      WZ = X·[u v], the W/Z producer (instantiated per storage type of X in
//                  trace_ratio_wz_f32.cu and trace_ratio_wz_f64.cu);
//   update_kernel  the commit update of A, B from W = scale·WZ[.., :C], Z = scale·WZ[.., C:],
//                  then every candidate's score and the argmax (trace_ratio_update_kernel.cu).
// trace_ratio_step_cuda.cu runs them as the ops trace_ratio_step and trace_ratio_update.
#pragma once
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "trace_ratio_math.h"

namespace fishermask_ext {
namespace cuda_kernels {

constexpr int kThreads = 128;   // both kernels: 4 warps per block
constexpr int kMaxC = 16;       // C up to this is compiled with its own C; above, a run-time C
constexpr int kTileRows = 32;   // wz_kernel: rows of X per tile (one per lane)
constexpr int kChunk = 32;      // wz_kernel: values of d staged per pass

// ---- the W/Z producer ----
// X [R, D] (R = N·C rows of the candidates) times UV [D, cols] (cols = 2C) into WZ [R, cols]
// f64. A block takes 32 rows at a time. Per D-chunk it stages the chunk of X (converted to
// float64 once, transposed: row-minor) and of UV in shared memory, both read from global
// memory with consecutive threads on consecutive addresses; then lane r of warp w accumulates
// row r's columns w, w + 4, ... (kPass / 4 registers): each staged x is reused for all its
// columns, each UV value is a broadcast to the warp. X is read once when cols <= kPass (every
// C <= 16); above, once per pass of 32 columns.
template <typename T>
struct WZArgs {
  const T* X;          // [R, D]
  const double* UV;    // [D, cols]
  double* WZ;          // [R, cols]
  int64_t R, D;
  int cols;
};

template <typename T, int kC>
__global__ void __launch_bounds__(kThreads) wz_kernel(WZArgs<T> p) {
  constexpr int kPass = kC > 0 ? 2 * kC : 32;   // columns per pass
  constexpr int kPer = (kPass + 3) / 4;          // per thread
  __shared__ double s_x[kChunk][kTileRows + 1];  // +1: the transposed stores avoid one bank
  __shared__ double s_uv[kChunk * kPass];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int64_t row0 = int64_t(blockIdx.x) * kTileRows; row0 < p.R;
       row0 += int64_t(gridDim.x) * kTileRows) {                  // uniform across the block
    for (int c0 = 0; c0 < p.cols; c0 += kPass) {
      const int pass = p.cols - c0 < kPass ? p.cols - c0 : kPass;
      double acc[kPer];
#pragma unroll
      for (int j = 0; j < kPer; ++j) acc[j] = 0.0;
      for (int64_t d0 = 0; d0 < p.D; d0 += kChunk) {
        for (int e = threadIdx.x; e < kChunk * kTileRows; e += kThreads) {
          const int r = e / kChunk, d = e % kChunk;
          const bool in = row0 + r < p.R && d0 + d < p.D;
          s_x[d][r] = in ? static_cast<double>(p.X[(row0 + r) * p.D + d0 + d]) : 0.0;
        }
        for (int e = threadIdx.x; e < kChunk * pass; e += kThreads) {
          const int d = e / pass, c = e % pass;
          s_uv[d * kPass + c] = d0 + d < p.D ? p.UV[(d0 + d) * p.cols + c0 + c] : 0.0;
        }
        __syncthreads();
        for (int d = 0; d < kChunk; ++d) {
          const double x = s_x[d][lane];
#pragma unroll
          for (int j = 0; j < kPer; ++j) {
            const int c = warp + 4 * j;
            if (c < pass) acc[j] += x * s_uv[d * kPass + c];
          }
        }
        __syncthreads();   // the next chunk overwrites what this one read
      }
#pragma unroll
      for (int j = 0; j < kPer; ++j) {
        const int c = warp + 4 * j;
        if (c < pass && row0 + lane < p.R) p.WZ[(row0 + lane) * p.cols + c0 + c] = acc[j];
      }
    }
  }
}

// ---- the update-and-score kernel ----
// A group of kGroup lanes (8 for C <= 8, 16 for C <= 16, else a warp) takes one candidate at a
// time: its A_i, B_i, W_i, Z_i and scratch live in shared memory (C > 16: in a global
// workspace), and the shared per-candidate math (trace_ratio_math.h) runs with each lane on its
// share of the rows. Nothing C×C stays in registers, so no C spills.
struct StepArgs {
  int64_t N;
  int C;
  const double* WZ;         // [N, C, 2C] unscaled, or null: score only
  double scale;
  double* A;                // [N, C, C], strides s0, s1, s2 (contiguous or candidate-minor)
  double* B;
  int64_t s0, s1, s2;
  const double* S;          // [C, C]
  const double* Q;          // [C, C]
  const bool* eligible;     // [N]
  double sigma;
  bool round_scores;
  double* ws;               // C > kMaxC: [gridDim.x · groups per block, tile_doubles(C)]
  double* scores;           // [N]
  double* block_score;      // [gridDim.x]
  int64_t* block_index;     // [gridDim.x]
  unsigned int* done;       // [1], zero before the launch
  int64_t* best;            // []
};

constexpr int group_lanes(int C) { return C <= 8 ? 8 : C <= 16 ? 16 : 32; }
constexpr int64_t tile_doubles(int64_t C) { return 5 * C * C + C; }   // a, b, w, z, t, inv_diag

// A group's lanes as a Share of the math: rows lane, lane + kGroup, ...; __syncwarp between
// stages (all lanes of the warp run the same stages, whatever their candidates).
template <int kGroup>
struct GroupShare {
  int lane;
  __device__ int first() const { return lane; }
  __device__ int step() const { return kGroup; }
  __device__ void sync() const { __syncwarp(); }
};

// The better of two (score, index) candidates: a real index beats -1, a higher score wins,
// equal scores go to the lower index (so -inf candidates still yield the first eligible one).
// Scores are never NaN here (the shared math maps NaN to -inf).
static __device__ inline void keep_better(double& score, int64_t& index, double s, int64_t i) {
  if (i < 0) return;
  if (index < 0 || s > score || (s == score && i < index)) {
    score = s;
    index = i;
  }
}

static __device__ void block_reduce(double* s_score, int64_t* s_index) {
  for (int stride = kThreads / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride)
      keep_better(s_score[threadIdx.x], s_index[threadIdx.x], s_score[threadIdx.x + stride],
                  s_index[threadIdx.x + stride]);
    __syncthreads();
  }
}

// The argmax over all blocks without a second launch: each block publishes its best, and the
// block that finishes last (the atomic counter reaches gridDim.x - 1) reads them all. The
// __threadfence orders the publication before the count, and __ldcg reads around the L1, which
// may hold stale lines of block_score/block_index.
static __device__ void grid_argmax(const StepArgs& p, double score, int64_t index) {
  __shared__ double s_score[kThreads];
  __shared__ int64_t s_index[kThreads];
  __shared__ bool is_last;
  s_score[threadIdx.x] = score;
  s_index[threadIdx.x] = index;
  __syncthreads();
  block_reduce(s_score, s_index);
  if (threadIdx.x == 0) {
    p.block_score[blockIdx.x] = s_score[0];
    p.block_index[blockIdx.x] = s_index[0];
    __threadfence();
    is_last = atomicAdd(p.done, 1u) == gridDim.x - 1;
  }
  __syncthreads();
  if (!is_last) return;
  score = -std::numeric_limits<double>::infinity();
  index = -1;
  for (unsigned int b = threadIdx.x; b < gridDim.x; b += kThreads)
    keep_better(score, index, __ldcg(p.block_score + b),
                static_cast<int64_t>(__ldcg(reinterpret_cast<const long long*>(p.block_index) + b)));
  s_score[threadIdx.x] = score;
  s_index[threadIdx.x] = index;
  __syncthreads();
  block_reduce(s_score, s_index);
  if (threadIdx.x == 0) *p.best = s_index[0];
}

// One candidate's tile: A_i, B_i from global memory, W_i, Z_i = scale·WZ_i (zeros past N).
template <int kG>
__device__ void load_tile(const StepArgs& p, int C, int64_t i, int lane, double* a, double* b,
                          double* w, double* z) {
  const int CC = C * C;
  for (int q = lane; q < CC; q += kG) {
    const int r = q / C, c = q % C;
    const int64_t at = i * p.s0 + r * p.s1 + c * p.s2;
    a[q] = i < p.N ? p.A[at] : 0.0;
    b[q] = i < p.N ? p.B[at] : 0.0;
    if (p.WZ != nullptr) {
      const double* wz = p.WZ + i * 2 * CC + r * 2 * C;
      w[q] = i < p.N ? p.scale * wz[c] : 0.0;
      z[q] = i < p.N ? p.scale * wz[C + c] : 0.0;
    }
  }
}

// At least 4 resident blocks: ptxas then allots up to 128 registers and spills nothing at any
// C (with the default bound it spilled 48 B at C = 16 and 24 B at C = 6 while using 48).
template <int kC>
__global__ void __launch_bounds__(kThreads, 4) update_kernel(StepArgs p) {
  extern __shared__ double smem[];
  constexpr int kG = group_lanes(kC > 0 ? kC : kMaxC + 1);
  constexpr int kGroups = kThreads / kG;                         // candidates per block at a time
  const int C = dim<kC>(p.C), CC = C * C;
  const int g = threadIdx.x / kG, lane = threadIdx.x % kG;
  double* tile = kC > 0 ? smem + g * tile_doubles(C)
                        : p.ws + (int64_t(blockIdx.x) * kGroups + g) * tile_doubles(C);
  double *a = tile, *b = a + CC, *w = b + CC, *z = w + CC, *t = z + CC, *inv = t + CC;
  const GroupShare<kG> share{lane};
  double my_score = -std::numeric_limits<double>::infinity();
  int64_t my_index = -1;
  for (int64_t first = int64_t(blockIdx.x) * kGroups; first < p.N;
       first += int64_t(gridDim.x) * kGroups) {                  // uniform across the block
    const int64_t i = first + g;
    load_tile<kG>(p, C, i, lane, a, b, w, z);
    share.sync();
    if (p.WZ != nullptr) {
      commit_update<kC, double>(C, a, b, w, z, t, p.S, p.Q, share);
      for (int q = lane; q < CC && i < p.N; q += kG) {
        const int64_t at = i * p.s0 + (q / C) * p.s1 + (q % C) * p.s2;
        p.A[at] = a[q];
        p.B[at] = b[q];
      }
    }
    double s = trace_ratio_score<kC, double>(C, a, b, p.sigma, w, z, t, inv, share);
    if (lane == 0 && i < p.N) {
      if (p.round_scores) s = static_cast<double>(static_cast<float>(s));   // parity mode
      s = p.eligible[i] ? s : -std::numeric_limits<double>::infinity();
      p.scores[i] = s;
      if (p.eligible[i]) keep_better(my_score, my_index, s, i);
    }
    share.sync();   // the next candidate's loads overwrite what the score read
  }
  grid_argmax(p, my_score, my_index);
}

// ---- launches ----
// f(std::integral_constant<int, kC>) with kC = C for C <= kMaxC, else 0: the kernels for C.
template <typename F, int kC = 1>
void with_c(int C, F&& f) {
  if constexpr (kC > kMaxC) {
    f(std::integral_constant<int, 0>{});
  } else if (C == kC) {
    f(std::integral_constant<int, kC>{});
  } else {
    with_c<F, kC + 1>(C, std::forward<F>(f));
  }
}

// The blocks of `kernel` that fit on the device at once: a grid of that many keeps every SM
// full, and grid-stride loops take the rest (no cap in bytes).
template <typename Kernel>
int64_t resident_blocks(Kernel* kernel, size_t shared) {
  int device = 0, sms = 0, per_sm = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, shared));
  return std::max<int64_t>(1, int64_t(sms) * per_sm);
}

template <typename T>
void launch_wz(const WZArgs<T>& p, int C) {
  if (p.R == 0) return;
  with_c(C, [&](auto c) {
    constexpr int kC = decltype(c)::value;
    const int64_t tiles = (p.R + kTileRows - 1) / kTileRows;
    const int64_t blocks = std::min(tiles, resident_blocks(&wz_kernel<T, kC>, 0));
    wz_kernel<T, kC><<<blocks, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(p);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace cuda_kernels

// The launches (trace_ratio_wz_f32.cu, trace_ratio_wz_f64.cu, trace_ratio_update_kernel.cu):
// each sizes its grid by the blocks that fit on the device at once.
void launch_wz_f32(const cuda_kernels::WZArgs<float>& p, int C);
void launch_wz_f64(const cuda_kernels::WZArgs<double>& p, int C);
// launch_update allocates nothing: for a grid of `blocks` = update_blocks(N, C), block_score
// and block_index hold `blocks` entries and, for C > kMaxC, p.ws holds
// blocks · update_groups_per_block(C) tiles of tile_doubles(C) (trace_ratio_step_cuda.cu).
int64_t update_blocks(int64_t N, int C);
int64_t update_groups_per_block(int C);   // candidates a block holds at once
void launch_update(const cuda_kernels::StepArgs& p, int64_t blocks);

}  // namespace fishermask_ext
