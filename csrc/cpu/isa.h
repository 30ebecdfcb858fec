// What the CPU kernels share about the machine: GCC vector types, the instruction set of this
// CPU and the target attributes that compile one copy of a kernel per instruction set (used by
// csrc/cpu/rows_times.h and csrc/cpu/conv_square_sum.h).
#pragma once
#include <cstdlib>
#include <string>

#define FM_INLINE inline __attribute__((always_inline))

namespace fishermask_ext {
namespace cpu {

// L values of T as one SIMD value (GCC vector extension).
template <typename T, int L>
struct Lanes {
  typedef T type __attribute__((vector_size(L * sizeof(T))));
  // The same vector at any address: loads and stores through it are single unaligned moves
  // (a memcpy into a vector array ends up copied through the stack).
  typedef T unaligned __attribute__((vector_size(L * sizeof(T)), aligned(sizeof(T)), may_alias));
};

// The instruction set of this CPU, read once. The kernels are compiled for each (target
// attributes) and the callers pick one: GCC's target_clones cannot vary the blocking.
// FISHERMASK_CPU_ISA=v3|base caps it (the tests run the narrower paths on a wider CPU).
enum class Isa { v4, v3, base };
inline Isa cpu_isa() {
  static const Isa isa = [] {
    Isa best = Isa::base;
#if defined(__GNUC__) && defined(__x86_64__)
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")) best = Isa::v4;
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best = Isa::v3;
#endif
    const char* cap = std::getenv("FISHERMASK_CPU_ISA");
    if (cap != nullptr && std::string(cap) == "base") return Isa::base;
    if (cap != nullptr && std::string(cap) == "v3" && best == Isa::v4) return Isa::v3;
    return best;
  }();
  return isa;
}

#if defined(__GNUC__) && defined(__x86_64__)
#define FM_TARGET_V4 __attribute__((target("arch=x86-64-v4")))
#define FM_TARGET_V3 __attribute__((target("arch=x86-64-v3")))
#else
#define FM_TARGET_V4
#define FM_TARGET_V3
#endif
#define FM_TARGET_BASE

// The one dispatch on the instruction set. A kernel compiles one copy per Isa as overloads on
// IsaTag<I> (each with its target attribute, FM_FOR_EACH_ISA below); a caller writes
//   on_isa(cpu_isa(), [&](auto tag) { kernel(tag, args...); })
// and never switches on the Isa itself.
template <Isa I>
struct IsaTag {
  static constexpr Isa value = I;
};

template <typename F>
FM_INLINE decltype(auto) on_isa(Isa isa, F&& f) {
  switch (isa) {
    case Isa::v4: return f(IsaTag<Isa::v4>{});
    case Isa::v3: return f(IsaTag<Isa::v3>{});
    default: return f(IsaTag<Isa::base>{});
  }
}

// M(TARGET, ISA) once per instruction set: the compiled copies of a kernel.
#define FM_FOR_EACH_ISA(M)                 \
  M(FM_TARGET_V4, ::fishermask_ext::cpu::Isa::v4) \
  M(FM_TARGET_V3, ::fishermask_ext::cpu::Isa::v3) \
  M(FM_TARGET_BASE, ::fishermask_ext::cpu::Isa::base)

}  // namespace cpu
}  // namespace fishermask_ext
