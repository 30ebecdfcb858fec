// cuda_on_cpu stand-in for the CUDA runtime's device queries (csrc/testing/cuda_on_cpu.h): a
// device of 2 SMs that holds 1 block each, so that small test problems already need several
// blocks and grid-stride loops.
#pragma once

enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16 };
constexpr cudaError_t cudaSuccess = 0;
inline cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
inline cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr, int) {
  *value = 2;
  return cudaSuccess;
}
template <typename F>
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* blocks, F*, int, size_t) {
  *blocks = 1;
  return cudaSuccess;
}
