// The scheduler behind csrc/testing/cuda_on_cpu.h: the threads of a block as ucontext fibers,
// switched only at barriers, and the launch checks of the CUDA driver.
#include "cuda_on_cpu.h"

#include <c10/util/Exception.h>
#include <ucontext.h>

#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace cuda_on_cpu {
namespace {

constexpr size_t kStackBytes = 256 << 10;   // committed by the OS only where touched
constexpr size_t kStaticSharedLimit = 48 << 10;
constexpr size_t kOptInSharedLimit = 227 << 10;   // H100/H200, after cudaFuncSetAttribute

enum class State { kRunning, kBlock, kWarp, kDone };

struct Fiber {
  ucontext_t context;
  dim3 index;
  State state = State::kRunning;
  Site site{nullptr, 0};
  uint64_t value = 0, result = 0;
  int src = 0;
};

struct Block {
  std::vector<Fiber> fibers;
  ucontext_t scheduler;
  size_t current = 0;
  void (*body)(void*) = nullptr;
  void* context = nullptr;
  std::string error;
};

thread_local Block* running = nullptr;
thread_local std::unique_ptr<char[]> stacks;
thread_local size_t stack_count = 0;
thread_local std::vector<unsigned char> shared_memory;
thread_local std::string last_error;
std::map<const void*, int> dynamic_limits;   // cudaFuncSetAttribute's opt-in per kernel

std::string where(const Site& s) {
  std::ostringstream o;
  o << (s.file ? s.file : "?") << ":" << s.line;
  return o.str();
}

// Leaves the fiber for good: the launch fails with `message`.
[[noreturn]] void fail(const std::string& message) {
  Fiber& f = running->fibers[running->current];
  if (running->error.empty()) running->error = message;
  f.state = State::kDone;
  swapcontext(&f.context, &running->scheduler);
  __builtin_unreachable();
}

void wait(State state, Site site) {
  Fiber& f = running->fibers[running->current];
  f.state = state;
  f.site = site;
  swapcontext(&f.context, &running->scheduler);
}

void fiber_main() {
  running->body(running->context);
  running->fibers[running->current].state = State::kDone;
}   // returns to the scheduler through uc_link

bool same_site(const Site& a, const Site& b) {
  return a.line == b.line && std::string(a.file) == b.file;
}

// Releases every warp whose lanes all wait at one warp barrier; "" or the divergence found.
std::string release_warps(Block& b, bool& released) {
  const size_t n = b.fibers.size();
  for (size_t w = 0; w < n; w += 32) {
    const size_t end = std::min(n, w + 32);
    bool any = false, all = true;
    for (size_t t = w; t < end; ++t) {
      any |= b.fibers[t].state == State::kWarp;
      all &= b.fibers[t].state == State::kWarp && same_site(b.fibers[t].site, b.fibers[w].site);
    }
    if (!any) continue;
    if (!all || end - w < 32) {
      std::ostringstream o;
      o << "divergent warp barrier or shuffle in warp " << w / 32 << " of block ("
        << blockIdx.x << ", " << blockIdx.y << ", " << blockIdx.z << "): lanes at";
      for (size_t t = w; t < end; ++t)
        o << " [" << t - w << ": "
          << (b.fibers[t].state == State::kDone ? std::string("exited")
                                                : where(b.fibers[t].site)) << "]";
      if (end - w < 32) o << " (a warp of " << end - w << " lanes)";
      return o.str();
    }
    for (size_t t = w; t < end; ++t) {
      Fiber& f = b.fibers[t];
      f.result = f.src < 0 ? f.value : b.fibers[w + f.src].value;
      f.state = State::kRunning;
    }
    released = true;
  }
  return "";
}

// Releases the block barrier when every thread waits at one __syncthreads; "" or the problem.
std::string release_block(Block& b) {
  const Site site = b.fibers[0].site;
  for (const Fiber& f : b.fibers)
    if (f.state != State::kBlock || !same_site(f.site, site)) {
      std::ostringstream o;
      o << "divergent __syncthreads in block (" << blockIdx.x << ", " << blockIdx.y << ", "
        << blockIdx.z << "): thread " << &f - b.fibers.data() << " "
        << (f.state == State::kDone ? "exited" : "waits at " + where(f.site))
        << " while others wait at " << where(site) << " (a deadlock on a GPU)";
      return o.str();
    }
  for (Fiber& f : b.fibers) f.state = State::kRunning;
  return "";
}

std::string run_block(Block& b) {
  for (;;) {
    bool any_running = false;
    for (size_t t = 0; t < b.fibers.size(); ++t) {
      if (b.fibers[t].state != State::kRunning) continue;
      any_running = true;
      b.current = t;
      threadIdx = b.fibers[t].index;
      swapcontext(&b.scheduler, &b.fibers[t].context);
      if (!b.error.empty()) return b.error;
    }
    if (any_running) continue;
    bool all_done = true;
    for (const Fiber& f : b.fibers) all_done &= f.state == State::kDone;
    if (all_done) return "";
    bool released = false;
    std::string error = release_warps(b, released);
    if (!error.empty() || released) {
      if (!error.empty()) return error;
      continue;
    }
    error = release_block(b);
    if (!error.empty()) return error;
  }
}

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

void block_barrier(Site site) { wait(State::kBlock, site); }

uint64_t warp_exchange(Site site, unsigned mask, uint64_t value, int src) {
  if (mask != 0xffffffffu) fail("cuda_on_cpu emulates full-mask warp operations only, at " + where(site));
  if (src < 0 || src >= 32) fail("shuffle width other than 32 at " + where(site));
  Fiber& f = running->fibers[running->current];
  f.value = value;
  f.src = src;
  wait(State::kWarp, site);
  return running->fibers[running->current].result;
}

void* dynamic_shared_memory() { return shared_memory.data(); }

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
  const size_t n = size_t(block.x) * block.y * block.z;
  if (stack_count < n) {
    stacks.reset(new char[n * kStackBytes]);
    stack_count = n;
  }
  Block b;
  b.body = body;
  b.context = context;
  b.fibers.resize(n);
  Block* outer = running;
  running = &b;
  gridDim = grid;
  blockDim = block;
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        blockIdx = dim3(x, y, z);
        // A block starts with undefined shared memory: NaN bytes make a read before a write show.
        shared_memory.assign(shared_bytes, 0xff);
        for (size_t t = 0; t < n; ++t) {
          Fiber& f = b.fibers[t];
          f = Fiber{};
          f.index = dim3(t % block.x, t / block.x % block.y, t / (size_t(block.x) * block.y));
          getcontext(&f.context);
          f.context.uc_stack.ss_sp = stacks.get() + t * kStackBytes;
          f.context.uc_stack.ss_size = kStackBytes;
          f.context.uc_link = &b.scheduler;
          makecontext(&f.context, fiber_main, 0);
        }
        const std::string error = run_block(b);
        if (!error.empty()) {
          last_error = "cuda_on_cpu: " + error;
          running = outer;
          return;
        }
      }
  running = outer;
}

void check_last_launch(const char* file, int line) {
  std::string error;
  std::swap(error, last_error);
  TORCH_CHECK(error.empty(), error, " (launch checked at ", file, ":", line, ")");
}

}  // namespace cuda_on_cpu
