// The shim's own test kernels (csrc/testing/cuda_on_cpu.h): one well-formed block reduction, and
// kernels that break the execution model on purpose, which a GPU would hang on or run with
// undefined results. Both schedulers must run the first and report each of the others as a
// launch error, without hanging (tests/cuda_on_cpu/test_shim.py for fibers,
// csrc/testing/sanitize.py for threads). Registered only in shim builds, never in the package.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

namespace fishermask_ext {
namespace {

constexpr int kThreads = 64;   // two warps

// kind 0: the sum of x [64], through shuffles, shared memory and a barrier.
// kind 1: the second warp returns before the barrier (a divergent __syncthreads).
// kind 2: lane 5 returns before the shuffle (a shuffle with an exited lane).
// kind 3: the two warps wait at two different barriers.
__global__ void selftest_kernel(const int64_t* __restrict__ x, int64_t* __restrict__ out,
                                int64_t kind) {
  __shared__ int64_t part[kThreads / 32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (kind == 2 && lane == 5) return;
  int64_t v = x[threadIdx.x];
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  if (lane == 0) part[warp] = v;
  if (kind == 1 && warp == 1) return;
  if (kind == 3 && warp == 1) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  if (threadIdx.x == 0) out[0] = part[0] + part[1];
}

at::Tensor shim_selftest(const at::Tensor& x, int64_t kind) {  // x [64] int64
  TORCH_CHECK(x.sizes() == at::IntArrayRef{kThreads} && x.scalar_type() == at::kLong,
              "x must be [64] int64");
  const at::Tensor xc = x.contiguous();
  at::Tensor out = at::zeros({}, x.options());
  selftest_kernel<<<1, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      xc.data_ptr<int64_t>(), out.data_ptr<int64_t>(), kind);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(fishermask_ext, m) { m.def("shim_selftest(Tensor x, int kind) -> Tensor"); }

TORCH_LIBRARY_IMPL(fishermask_ext, CUDA, m) { m.impl("shim_selftest", &shim_selftest); }

}  // namespace fishermask_ext
