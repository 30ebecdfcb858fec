// Runs the unmodified kernels of csrc/cuda on the CPU, so CI executes every __global__ function
// without a GPU (tests/cuda_on_cpu; the sources pass through csrc/testing/cuda_to_host.py,
// which rewrites the <<<>>> launches and `extern __shared__` declarations, nothing else).
//
// Two schedulers, chosen at compile time, behind one interface (cuda_on_cpu.cpp holds what they
// share: launch limits, the loop over blocks, the error kept for the launch check):
// - fibers (default, cuda_on_cpu_fibers.cpp): the threads of a block are ucontext fibers on the
//   calling OS thread, switched only at barriers. A barrier is released when every thread it
//   concerns waits at the same call (file and line); any other state (some threads at another
//   barrier, or finished) is a divergent barrier: the launch fails with a message, no hang.
//   One order of execution only, so a missing barrier between two writers does not show.
// - threads (-DFM_SHIM_THREADS, cuda_on_cpu_threads.cpp): every thread of a block is an OS
//   thread and the barriers are a mutex and condition variable, which ThreadSanitizer
//   understands; a missing __syncthreads is then a data race it reports
//   (csrc/testing/sanitize.py). Divergence is detected too: all threads blocked or exited.
// The blocks of a launch run one after another in both, so `__shared__` can be `static`.
// - Shuffles and __syncwarp are warp barriers: all 32 lanes must arrive (full masks only).
// - Launch limits are checked as the driver does; dynamic shared memory is poisoned with NaN
//   bytes before each block, so a read before a write shows in the results.
// Every translation unit of a shim build includes this header first, with the same settings:
// the scheduler's functions live in an inline namespace named after it, so objects built with
// different settings fail to link instead of mixing two schedulers.
#pragma once
#include <torch/library.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <set>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
using cudaStream_t = struct cuda_on_cpu_stream*;
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
using cudaError_t = int;
constexpr int warpSize = 32;

// The running thread's coordinates: set by the scheduler before it resumes a fiber.
extern thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

#ifdef FM_SHIM_THREADS
#define FM_SHIM_SCHEDULER threads
#else
#define FM_SHIM_SCHEDULER fibers
#endif

namespace cuda_on_cpu {
inline namespace FM_SHIM_SCHEDULER {

struct Site {
  const char* file;
  int line;
  // The caller's file and line. Written as a call with defaulted arguments because GCC 12
  // evaluates __builtin_LINE() inside a braced initialiser in a default argument at the
  // declaration, which made every barrier one site and hid divergent ones (test_shim.py).
  static constexpr Site here(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    return {file, line};
  }
};

std::string where(const Site& s);
void block_barrier(Site site);
// Waits for the 32 lanes of the warp at `site`; the lanes' `value`s are exchanged through it:
// returns the value of lane `src` (a lane outside the warp gets its own value back).
uint64_t warp_exchange(Site site, unsigned mask, uint64_t value, int src);
void* dynamic_shared_memory();
void set_max_dynamic_shared(const void* kernel, int bytes);
// Runs body() as every thread of every block of the launch; a failure is kept for
// C10_CUDA_KERNEL_LAUNCH_CHECK (as the CUDA runtime keeps it for cudaGetLastError).
void run_launch(dim3 grid, dim3 block, size_t shared_bytes, const void* kernel,
                void (*body)(void*), void* context);
void check_last_launch(const char* file, int line);
// Records that a kernel (its name, as written at the launch) was launched: cuda_to_host.py
// puts a call before every launch, so a test can check that each __global__ ran.
void note_launch(const char* kernel);
std::set<std::string>& launched_kernels();
// The scheduler's part: runs body(context) as every thread of block blockIdx (blockIdx,
// blockDim and gridDim are set on the calling thread) with `shared` as its dynamic shared
// memory; "" or the divergence found.
std::string run_block(dim3 block, unsigned char* shared, void (*body)(void*), void* context);

template <typename... P>
struct Launcher {
  void (*kernel)(P...);
  dim3 grid, block;
  size_t shared;
  template <typename... A>
  void operator()(A&&... args) const {
    // Arguments convert to the parameter types once, as the runtime copies them.
    std::tuple<std::decay_t<P>...> params(std::forward<A>(args)...);
    struct Context {
      void (*kernel)(P...);
      std::tuple<std::decay_t<P>...>* params;
    } context{kernel, &params};
    run_launch(grid, block, shared, reinterpret_cast<const void*>(kernel),
               [](void* c) {
                 auto* ctx = static_cast<Context*>(c);
                 std::apply(ctx->kernel, *ctx->params);
               },
               &context);
  }
};

// kernel<<<grid, block, shared, stream>>>(args) becomes launch(kernel, grid, block, shared,
// stream)(args).
template <typename... P>
Launcher<P...> launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t shared = 0,
                      cudaStream_t = nullptr) {
  return {kernel, grid, block, shared};
}

template <typename T>
T* dynamic_shared() {
  return static_cast<T*>(dynamic_shared_memory());
}

template <typename T>
T shuffle(Site site, unsigned mask, T v, int src) {
  static_assert(sizeof(T) <= sizeof(uint64_t) && std::is_trivially_copyable_v<T>);
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  bits = warp_exchange(site, mask, bits, src);
  std::memcpy(&v, &bits, sizeof(T));
  return v;
}

inline int lane_id() {
  const unsigned t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  return static_cast<int>(t % 32);
}

}  // namespace FM_SHIM_SCHEDULER
}  // namespace cuda_on_cpu

#define FM_SITE ::cuda_on_cpu::Site::here()

inline void __syncthreads(::cuda_on_cpu::Site site = FM_SITE) {
  ::cuda_on_cpu::block_barrier(site);
}
inline void __syncwarp(unsigned mask = 0xffffffffu, ::cuda_on_cpu::Site site = FM_SITE) {
  ::cuda_on_cpu::warp_exchange(site, mask, 0, 0);
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32,
                  ::cuda_on_cpu::Site site = FM_SITE) {
  const int lane = ::cuda_on_cpu::lane_id();
  return ::cuda_on_cpu::shuffle(site, mask, v, width == 32 ? lane ^ lane_mask : -1);
}
template <typename T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32,
                   ::cuda_on_cpu::Site site = FM_SITE) {
  const int lane = ::cuda_on_cpu::lane_id();
  const int src = lane + static_cast<int>(delta);
  return ::cuda_on_cpu::shuffle(site, mask, v, width == 32 && src < 32 ? src : lane);
}
template <typename T>
T __shfl_sync(unsigned mask, T v, int src, int width = 32, ::cuda_on_cpu::Site site = FM_SITE) {
  return ::cuda_on_cpu::shuffle(site, mask, v, width == 32 ? src % 32 : -1);
}
#ifdef FM_SHIM_THREADS
// Real threads: real atomics, and a fence the race detector sees.
template <typename T>
T atomicAdd(T* p, T v) {
  return std::atomic_ref<T>(*p).fetch_add(v);
}
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
#else
// One OS thread runs every CUDA thread, so plain memory operations are atomic and ordered.
template <typename T>
T atomicAdd(T* p, T v) {
  const T old = *p;
  *p = old + v;
  return old;
}
inline void __threadfence() {}
#endif
template <typename T>
T __ldcg(const T* p) {
  return *p;
}
template <typename F>
cudaError_t cudaFuncSetAttribute(F* kernel, cudaFuncAttribute, int value) {
  ::cuda_on_cpu::set_max_dynamic_shared(reinterpret_cast<const void*>(kernel), value);
  return 0;
}

// The kernels' CUDA registrations become CPU registrations in the test namespace
// (FM_SHIM_NAMESPACE, default fishermask_ext_cuda_on_cpu), where the tests call them as ops.
#ifndef FM_SHIM_NAMESPACE
#define FM_SHIM_NAMESPACE fishermask_ext_cuda_on_cpu
#endif
#define FM_SHIM_IMPL(ns, m) _TORCH_LIBRARY_IMPL(ns, CPU, m, C10_UID)
#undef TORCH_LIBRARY_IMPL
#define TORCH_LIBRARY_IMPL(ns, k, m) FM_SHIM_IMPL(FM_SHIM_NAMESPACE, m)
