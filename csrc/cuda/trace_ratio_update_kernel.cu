// The update-and-score kernel for every C (see trace_ratio_kernels.cuh) and its launch.
#include "cuda/trace_ratio_kernels.cuh"

namespace fishermask_ext {
namespace {

using cuda_kernels::kThreads;

constexpr int64_t groups_per_block(int kC) {
  return kThreads / cuda_kernels::group_lanes(kC > 0 ? kC : cuda_kernels::kMaxC + 1);
}

// Dynamic shared memory of update_kernel<kC> (its tiles; none above kMaxC), with the kernel
// allowed to use more than the default 48 KB where it needs to (C >= 13).
template <int kC>
size_t prepare_update() {
  const size_t bytes = kC > 0 ? groups_per_block(kC) * cuda_kernels::tile_doubles(kC) * sizeof(double) : 0;
  if (bytes > (48 << 10))
    C10_CUDA_CHECK(cudaFuncSetAttribute(&cuda_kernels::update_kernel<kC>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(bytes)));
  return bytes;
}

}  // namespace

int64_t update_groups_per_block(int C) { return groups_per_block(C <= cuda_kernels::kMaxC ? C : 0); }

int64_t update_blocks(int64_t N, int C) {
  int64_t blocks = 1;
  cuda_kernels::with_c(C, [&](auto c) {
    constexpr int kC = decltype(c)::value;
    const size_t shared = prepare_update<kC>();
    const int64_t needed = (N + groups_per_block(kC) - 1) / groups_per_block(kC);
    blocks = std::min(needed, cuda_kernels::resident_blocks(&cuda_kernels::update_kernel<kC>, shared));
  });
  return std::max<int64_t>(blocks, 1);
}

void launch_update(const cuda_kernels::StepArgs& p, int64_t blocks) {
  cuda_kernels::with_c(p.C, [&](auto c) {
    constexpr int kC = decltype(c)::value;
    const size_t shared = prepare_update<kC>();
    cuda_kernels::update_kernel<kC><<<blocks, kThreads, shared, c10::cuda::getCurrentCUDAStream()>>>(p);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace fishermask_ext
