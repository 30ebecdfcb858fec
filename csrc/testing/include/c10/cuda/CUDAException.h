// cuda_on_cpu stand-in for c10's CUDA error checks (csrc/testing/cuda_on_cpu.h): a launch that
// failed in the shim (divergent barrier, launch limits) throws here, as a CUDA error would.
#pragma once
#define C10_CUDA_KERNEL_LAUNCH_CHECK() ::cuda_on_cpu::check_last_launch(__FILE__, __LINE__)
#define C10_CUDA_CHECK(expr) (void)(expr)
