// The cpu_isa op (csrc/ops.cpp): the instruction set the CPU kernels chose (cpu/isa.h), for
// `fishermask info`. No tensor arguments, so one CompositeExplicitAutograd kernel serves every
// dispatch (an op without tensors dispatches to it with no device key).
#include <torch/library.h>

#include <string>

#include "cpu/isa.h"

namespace fishermask_ext {
namespace {

std::string cpu_isa_name() {
  switch (cpu::cpu_isa()) {
    case cpu::Isa::v4: return "v4";
    case cpu::Isa::v3: return "v3";
    default: return "base";
  }
}

}  // namespace

TORCH_LIBRARY_IMPL(fishermask_ext, CompositeExplicitAutograd, m) {
  m.impl("cpu_isa", &cpu_isa_name);
}

}  // namespace fishermask_ext
