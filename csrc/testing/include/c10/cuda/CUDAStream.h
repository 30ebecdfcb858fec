// cuda_on_cpu stand-in for c10's CUDA stream (csrc/testing/cuda_on_cpu.h): one implicit stream.
#pragma once
#include <c10/core/Device.h>

namespace c10::cuda {
struct CUDAStream {
  operator cudaStream_t() const { return nullptr; }
  cudaStream_t stream() const { return nullptr; }
};
inline CUDAStream getCurrentCUDAStream(c10::DeviceIndex = -1) { return {}; }
}  // namespace c10::cuda
