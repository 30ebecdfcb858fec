// The default scheduler of csrc/testing/cuda_on_cpu.h: the threads of a block as ucontext
// fibers on the calling OS thread, switched only at barriers, each barrier checked for
// divergence when no fiber can run.
#include "cuda_on_cpu.h"

#include <ucontext.h>

#include <algorithm>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#ifdef FM_SHIM_THREADS
#error "cuda_on_cpu_fibers.cpp is the scheduler of builds without FM_SHIM_THREADS"
#endif

namespace cuda_on_cpu {
inline namespace FM_SHIM_SCHEDULER {
namespace {

constexpr size_t kStackBytes = 256 << 10;   // committed by the OS only where touched

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
  unsigned char* shared = nullptr;
  std::string error;
};

thread_local Block* running = nullptr;
thread_local std::unique_ptr<char[]> stacks;
thread_local size_t stack_count = 0;

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

std::string run_fibers(Block& b) {
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

void* dynamic_shared_memory() { return running->shared; }

std::string run_block(dim3 block, unsigned char* shared, void (*body)(void*), void* context) {
  const size_t n = size_t(block.x) * block.y * block.z;
  if (stack_count < n) {
    stacks.reset(new char[n * kStackBytes]);
    stack_count = n;
  }
  Block b;
  b.body = body;
  b.context = context;
  b.shared = shared;
  b.fibers.resize(n);
  for (size_t t = 0; t < n; ++t) {
    Fiber& f = b.fibers[t];
    f.index = dim3(t % block.x, t / block.x % block.y, t / (size_t(block.x) * block.y));
    getcontext(&f.context);
    f.context.uc_stack.ss_sp = stacks.get() + t * kStackBytes;
    f.context.uc_stack.ss_size = kStackBytes;
    f.context.uc_link = &b.scheduler;
    makecontext(&f.context, fiber_main, 0);
  }
  Block* outer = running;
  running = &b;
  std::string error = run_fibers(b);
  running = outer;
  return error;
}

}  // namespace FM_SHIM_SCHEDULER
}  // namespace cuda_on_cpu
