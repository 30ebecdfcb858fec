// What both schedulers of csrc/testing/cuda_on_cpu.h share: the launch checks of the CUDA
// driver, the loop over a launch's blocks, and the error kept for C10_CUDA_KERNEL_LAUNCH_CHECK.
// The threads of one block are the scheduler's (cuda_on_cpu_fibers.cpp or
// cuda_on_cpu_threads.cpp, FM_SHIM_THREADS).
#include "cuda_on_cpu.h"

#include <c10/util/Exception.h>

#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace cuda_on_cpu {
inline namespace FM_SHIM_SCHEDULER {
namespace {

constexpr size_t kStaticSharedLimit = 48 << 10;
constexpr size_t kOptInSharedLimit = 227 << 10;   // H100/H200, after cudaFuncSetAttribute

thread_local std::vector<unsigned char> shared_memory;
thread_local std::string last_error;
std::map<const void*, int> dynamic_limits;   // cudaFuncSetAttribute's opt-in per kernel

std::string check_config(dim3 grid, dim3 block, size_t shared, const void* kernel) {
  const uint64_t threads = uint64_t(block.x) * block.y * block.z;
  if (grid.x < 1 || grid.y < 1 || grid.z < 1 || grid.x > 2147483647u || grid.y > 65535 ||
      grid.z > 65535)
    return "invalid grid";
  if (threads < 1 || threads > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64)
    return "invalid block";
  const auto opt_in = dynamic_limits.find(kernel);
  const size_t limit = opt_in == dynamic_limits.end() ? kStaticSharedLimit
                                                      : static_cast<size_t>(opt_in->second);
  if (shared > limit || limit > kOptInSharedLimit) return "too much dynamic shared memory";
  return "";
}

}  // namespace

std::string where(const Site& s) {
  std::ostringstream o;
  o << (s.file ? s.file : "?") << ":" << s.line;
  return o.str();
}

void set_max_dynamic_shared(const void* kernel, int bytes) { dynamic_limits[kernel] = bytes; }

void run_launch(dim3 grid, dim3 block, size_t shared_bytes, const void* kernel,
                void (*body)(void*), void* context) {
  const std::string bad = check_config(grid, block, shared_bytes, kernel);
  if (!bad.empty()) {
    last_error = "cuda_on_cpu: " + bad + " in a launch of grid (" + std::to_string(grid.x) + ", " +
                 std::to_string(grid.y) + ", " + std::to_string(grid.z) + "), block (" +
                 std::to_string(block.x) + ", " + std::to_string(block.y) + ", " +
                 std::to_string(block.z) + "), " + std::to_string(shared_bytes) + " B shared";
    return;
  }
  gridDim = grid;
  blockDim = block;
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        blockIdx = dim3(x, y, z);
        // A block starts with undefined shared memory: NaN bytes make a read before a write show.
        shared_memory.assign(shared_bytes, 0xff);
        const std::string error = run_block(block, shared_memory.data(), body, context);
        if (!error.empty()) {
          last_error = "cuda_on_cpu: " + error;
          return;
        }
      }
}

void note_launch(const char* kernel) {
  static std::mutex mutex;
  std::lock_guard<std::mutex> lock(mutex);
  launched_kernels().insert(kernel);
}

std::set<std::string>& launched_kernels() {
  static std::set<std::string> names;
  return names;
}

void check_last_launch(const char* file, int line) {
  std::string error;
  std::swap(error, last_error);
  TORCH_CHECK(error.empty(), error, " (launch checked at ", file, ":", line, ")");
}

}  // namespace FM_SHIM_SCHEDULER
}  // namespace cuda_on_cpu

// The kernels launched so far in this process, one name per line (sorted): read with ctypes by
// tests/cuda_on_cpu/test_every_kernel.py, which checks that every __global__ of csrc/cuda ran.
extern "C" const char* cuda_on_cpu_launched() {
  static std::string joined;
  joined.clear();
  for (const auto& name : cuda_on_cpu::launched_kernels()) joined += name + "\n";
  return joined.c_str();
}
