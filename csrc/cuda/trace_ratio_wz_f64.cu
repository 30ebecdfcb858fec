// The W/Z producer for double storage of X (see trace_ratio_kernels.cuh): one translation unit per
// storage type, so the kernels of both compile in parallel.
#include "cuda/trace_ratio_kernels.cuh"

namespace fishermask_ext {

void launch_wz_f64(const cuda_kernels::WZArgs<double>& p, int C) { cuda_kernels::launch_wz<double>(p, C); }

}  // namespace fishermask_ext
