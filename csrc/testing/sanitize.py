"""AddressSanitizer and ThreadSanitizer runs of the CUDA kernels on the CPU (CI: .ci/run).

Builds csrc/testing/sanitize_driver.cpp with the step-A and step-C kernels of csrc/cuda
(fisher_sq_cuda.cu, masked_grad_cuda.cu) and the shim's self-test, twice:
- asan: the fiber scheduler under -fsanitize=address: an out-of-bounds access of a kernel is a
  report;
- tsan: the thread scheduler (-DFM_SHIM_THREADS: a block's threads are OS threads) under
  -fsanitize=thread: two threads that touch one shared-memory word without a barrier between
  them are a report. A fiber schedule runs threads in one order and would hide it.
Each build also links a planted variant, the same objects with one kernel file mutated (PLANTED):
the real program must run clean and the planted one must be reported, or the run fails.
Every object of a build gets the same flags (the shim's scheduler and the sanitizer); ninja keeps
the objects in build/sanitize between runs; one precompiled header per build (the shim and ATen)
halves the compile time. Usage: python csrc/testing/sanitize.py [asan|tsan]
"""
import os
import shlex
import subprocess
import sys
import sysconfig
import time

import torch
import torch.utils.cpp_extension as cpp

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import cuda_to_host  # noqa: E402

NS = "fishermask_ext_cuda_on_cpu"
KERNELS = ["fisher_sq_cuda.cu", "masked_grad_cuda.cu", "testing/shim_selftest.cu"]
FISHER = "csrc/cuda/fisher_sq_cuda.cu"
# (the mutation of one kernel file, what the sanitizer must say about the planted program)
PLANTED = {
    # off by one: square_sum's grid-stride loop runs one entry past out [Gr, R]
    "asan": ([(FISHER, "t < Gr * R;", "t <= Gr * R;")], "heap-buffer-overflow"),
    # the barrier between the warps' shared-memory writes and warp 0's reads removed
    "tsan": ([(FISHER, "  __syncthreads();   // every warp's sums are written before warp 0 adds them up\n",
               "")],
             "ThreadSanitizer: data race"),
}
PCH = ['"cuda_on_cpu.h"', "<ATen/ATen.h>", "<ATen/AccumulateType.h>",
       "<ATen/core/dispatch/Dispatcher.h>"]
FLAGS = {"asan": ["-fsanitize=address", "-fno-omit-frame-pointer"],
         "tsan": ["-fsanitize=thread", "-DFM_SHIM_THREADS"]}
# detect_leaks: libtorch's registries live until exit; exitcode: a report fails the run.
ENV = {"asan": {"ASAN_OPTIONS": "detect_leaks=0:exitcode=23"},
       "tsan": {"TSAN_OPTIONS": "exitcode=66:halt_on_error=0:report_signal_unsafe=0"}}


def _ninja(kind, out):
    """build.ninja of one sanitizer: the program `real` and the program `planted`."""
    mutations, _ = PLANTED[kind]
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    includes = [os.path.join(HERE, "include"), HERE, os.path.dirname(HERE),
                sysconfig.get_paths()["include"], *cpp.include_paths()]
    cflags = (["-O1", "-g1", "-std=c++20", "-w", "-fno-strict-aliasing", "-fPIC",
               f"-D_GLIBCXX_USE_CXX11_ABI={abi}", f"-DFM_SHIM_NAMESPACE={NS}"] + FLAGS[kind] +
              [f"-I{p}" for p in includes])
    libs = cpp.library_paths()[0]
    ldflags = FLAGS[kind][:1] + [f"-L{libs}", f"-Wl,-rpath,{libs}", "-lc10", "-ltorch_cpu"]
    real = cuda_to_host.sources(NS, KERNELS)
    fisher = [s for s in real if s.endswith("__fisher_sq_cuda.cpp")]
    # The planted file keeps the real one's namespace (so the driver calls it as it calls the
    # real one) and lives in its own folder.
    planted = cuda_to_host.sources(NS, [os.path.basename(FISHER)], mutations,
                                   os.path.join(out, "planted_src"))[1:]
    scheduler = "cuda_on_cpu_threads.cpp" if kind == "tsan" else "cuda_on_cpu_fibers.cpp"
    shared = [os.path.join(HERE, f) for f in ("cuda_on_cpu.cpp", scheduler, "sanitize_driver.cpp")]
    shared += [s for s in real if s not in fisher]
    q = lambda args: " ".join(shlex.quote(a) for a in args)
    obj = lambda src, tag="": os.path.join(out, tag + os.path.basename(src) + ".o")
    # Every file starts with the shim and ATen, precompiled once per build with its flags
    # (a header compiled with other flags would be ignored by the compiler, not misused).
    pch = os.path.join(out, "sanitize_pch.h")
    cuda_to_host._write(pch, "".join(f"#include {h}\n" for h in PCH))
    lines = [f"cflags = {q(cflags)}", f"ldflags = {q(ldflags)}",
             f"rule pch\n  command = c++ $cflags -x c++-header $in -o $out -MMD -MF $out.d\n"
             f"  depfile = $out.d\n  deps = gcc",
             f"rule {kind}_cc\n  command = c++ $cflags -include {pch} -c $in -o $out -MMD -MF $out.d"
             f"\n  depfile = $out.d\n  deps = gcc",
             "rule link\n  command = c++ $in -o $out $ldflags",
             f"build {pch}.gch: pch {pch}"]
    lines += [f"build {obj(s)}: {kind}_cc {s} | {pch}.gch" for s in shared + fisher]
    lines += [f"build {obj(s, 'planted_')}: {kind}_cc {s} | {pch}.gch" for s in planted]
    common = " ".join(obj(s) for s in shared)
    lines.append(f"build {out}/real: link {common} {obj(fisher[0])}")
    lines.append(f"build {out}/planted: link {common} {obj(planted[0], 'planted_')}")
    return "\n".join(lines) + "\n"


def _run(program, env):
    """(exit status, output) of one program of a build."""
    done = subprocess.run([program], env={**os.environ, "OMP_NUM_THREADS": "1", **env},
                          capture_output=True, text=True)
    return done.returncode, done.stdout + done.stderr


def build(kinds):
    """Builds the programs of `kinds` in one ninja run (the two builds share the cores)."""
    root = os.path.join(cuda_to_host.ROOT, "build", "sanitize")
    for kind in kinds:
        out = os.path.join(root, kind)
        os.makedirs(out, exist_ok=True)
        cuda_to_host._write(os.path.join(out, "build.ninja"), _ninja(kind, out))
    cuda_to_host._write(os.path.join(root, "build.ninja"),
                        "".join(f"subninja {kind}/build.ninja\n" for kind in kinds))
    subprocess.run(["ninja", "-C", root], check=True, stdout=subprocess.DEVNULL)
    return root


def check(kind, root):
    """Runs one sanitizer's programs; returns the problems found ([] when it passes)."""
    out = os.path.join(root, kind)
    start = time.time()
    problems = []
    status, text = _run(os.path.join(out, "real"), ENV[kind])
    print(text.rstrip())
    if status != 0:
        problems.append(f"{kind}: the real kernels failed (exit status {status}), see above")
    status, text = _run(os.path.join(out, "planted"), ENV[kind])
    report = PLANTED[kind][1]
    if status == 0 or report not in text:
        print(text.rstrip())
        problems.append(f"{kind}: the planted bug was not reported ({report!r}, exit status "
                        f"{status})")
    else:
        print(f"{kind}: the planted bug is reported: {report}")
    print(f"{kind}: runs {time.time() - start:.0f} s")
    return problems


def main(kinds):
    start = time.time()
    root = build(kinds)
    print(f"build of {', '.join(kinds)}: {time.time() - start:.0f} s")
    problems = [p for kind in kinds for p in check(kind, root)]
    for p in problems:
        print("FAILED:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["asan", "tsan"]))
