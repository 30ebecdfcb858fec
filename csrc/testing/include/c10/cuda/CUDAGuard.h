// cuda_on_cpu stand-in for c10's CUDA device guards (csrc/testing/cuda_on_cpu.h): one device.
#pragma once
#include <c10/core/Device.h>
#include <optional>

namespace c10::cuda {
struct CUDAGuard {
  explicit CUDAGuard(c10::Device) {}
  explicit CUDAGuard(c10::DeviceIndex) {}
};
struct OptionalCUDAGuard {
  explicit OptionalCUDAGuard(std::optional<c10::Device>) {}
};
}  // namespace c10::cuda
