// The race-checking scheduler of csrc/testing/cuda_on_cpu.h (-DFM_SHIM_THREADS): every thread
// of a block is an OS thread, so two threads that touch the same shared memory without a
// barrier between them are a data race ThreadSanitizer reports (csrc/testing/sanitize.py).
// All synchronisation is one mutex and condition variable per block: TSan does not model
// libstdc++'s std::barrier, and one lock makes a deadlock easy to see: a thread about to wait
// while every other thread waits or has exited completed no barrier, so none ever will.
#include "cuda_on_cpu.h"

#include <condition_variable>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#ifndef FM_SHIM_THREADS
#error "cuda_on_cpu_threads.cpp is the scheduler of FM_SHIM_THREADS builds"
#endif

namespace cuda_on_cpu {
inline namespace FM_SHIM_SCHEDULER {
namespace {

struct Abort {};   // thrown in every waiting thread once the launch has failed

// One barrier: the threads it concerns, those that arrived, and where the first one waits.
struct Gate {
  size_t size = 0, arrived = 0, exited = 0;
  uint64_t generation = 0;
  Site site{nullptr, 0};
};

struct Block {
  size_t n = 0;
  unsigned char* shared = nullptr;
  std::mutex mutex;
  std::condition_variable released;
  Gate block;
  std::vector<Gate> warps;
  std::vector<uint64_t> value, result;   // a shuffle's lane values, per thread
  std::vector<int> src;
  size_t blocked = 0, exited = 0;
  std::string error;
};

thread_local Block* running = nullptr;
thread_local size_t me = 0;   // the running thread's linear index in its block

bool same_site(const Site& a, const Site& b) {
  return a.line == b.line && std::string(a.file) == b.file;
}

[[noreturn]] void fail(Block& b, std::unique_lock<std::mutex>&, const std::string& message) {
  if (b.error.empty()) b.error = message;
  b.released.notify_all();
  throw Abort{};
}

std::string block_name() {
  std::ostringstream o;
  o << "block (" << blockIdx.x << ", " << blockIdx.y << ", " << blockIdx.z << ")";
  return o.str();
}

// Arrives at `gate` from `site`; returns once every thread of the gate has arrived there.
// `on_release` runs under the lock in the last thread to arrive.
template <typename OnRelease>
void arrive(Gate& gate, Site site, const char* what, const OnRelease& on_release) {
  Block& b = *running;
  std::unique_lock<std::mutex> lock(b.mutex);
  if (!b.error.empty()) throw Abort{};
  if (gate.arrived == 0) gate.site = site;
  if (!same_site(gate.site, site))
    fail(b, lock, std::string("divergent ") + what + " in " + block_name() + ": thread " +
                      std::to_string(me) + " waits at " + where(site) + " while others wait at " +
                      where(gate.site) + " (a deadlock on a GPU)");
  if (++gate.arrived == gate.size) {
    on_release();
    gate.arrived = 0;
    ++gate.generation;
    b.blocked -= gate.size - 1;
    b.released.notify_all();
    return;
  }
  if (gate.arrived + gate.exited == gate.size || ++b.blocked + b.exited == b.n)
    fail(b, lock, std::string("divergent ") + what + " in " + block_name() + ": thread " +
                      std::to_string(me) + " waits at " + where(site) +
                      " while every other thread has exited or waits elsewhere (a deadlock on "
                      "a GPU)");
  const uint64_t generation = gate.generation;
  b.released.wait(lock, [&] { return gate.generation != generation || !b.error.empty(); });
  if (gate.generation == generation) throw Abort{};
}

// The end of a thread: a barrier that still waits for it never completes.
void leave(Block& b) {
  std::unique_lock<std::mutex> lock(b.mutex);
  ++b.exited;
  Gate& warp = b.warps[me / 32];
  ++warp.exited;
  ++b.block.exited;
  const bool stuck = (b.block.arrived > 0 && b.block.arrived + b.block.exited == b.block.size) ||
                     (warp.arrived > 0 && warp.arrived + warp.exited == warp.size) ||
                     (b.blocked > 0 && b.blocked + b.exited == b.n);
  if (stuck && b.error.empty()) {
    b.error = "divergent barrier or shuffle in " + block_name() + ": thread " +
              std::to_string(me) + " exited while others wait (a deadlock on a GPU)";
    b.released.notify_all();
  }
}

}  // namespace

void block_barrier(Site site) { arrive(running->block, site, "__syncthreads", [] {}); }

uint64_t warp_exchange(Site site, unsigned mask, uint64_t value, int src) {
  Block& b = *running;
  if (mask != 0xffffffffu || src < 0 || src >= 32) {
    std::unique_lock<std::mutex> lock(b.mutex);
    fail(b, lock, "cuda_on_cpu emulates full-mask, width-32 warp operations only, at " +
                      where(site));
  }
  const size_t w = me / 32 * 32;
  Gate& warp = b.warps[me / 32];
  if (warp.size < 32) {
    std::unique_lock<std::mutex> lock(b.mutex);
    fail(b, lock, "warp operation in a warp of " + std::to_string(warp.size) + " lanes at " +
                      where(site));
  }
  b.value[me] = value;   // read by the last lane to arrive, under the lock after this write
  b.src[me] = src;
  arrive(warp, site, "warp barrier or shuffle", [&] {
    for (size_t t = w; t < w + 32; ++t) b.result[t] = b.src[t] < 0 ? b.value[t] : b.value[w + b.src[t]];
  });
  return b.result[me];
}

void* dynamic_shared_memory() { return running->shared; }

std::string run_block(dim3 block, unsigned char* shared, void (*body)(void*), void* context) {
  Block b;
  b.n = size_t(block.x) * block.y * block.z;
  b.shared = shared;
  b.block.size = b.n;
  b.warps.resize((b.n + 31) / 32);
  for (size_t w = 0; w < b.warps.size(); ++w) b.warps[w].size = std::min<size_t>(32, b.n - 32 * w);
  b.value.resize(b.n);
  b.result.resize(b.n);
  b.src.resize(b.n);
  const dim3 grid = gridDim, index = blockIdx;
  std::vector<std::thread> threads;
  threads.reserve(b.n);
  for (size_t t = 0; t < b.n; ++t)
    threads.emplace_back([&, t] {
      running = &b;
      me = t;
      gridDim = grid;
      blockDim = block;
      blockIdx = index;
      threadIdx = dim3(t % block.x, t / block.x % block.y, t / (size_t(block.x) * block.y));
      try {
        body(context);
      } catch (const Abort&) {
      }
      leave(b);
    });
  for (std::thread& t : threads) t.join();
  return b.error;
}

}  // namespace FM_SHIM_SCHEDULER
}  // namespace cuda_on_cpu
