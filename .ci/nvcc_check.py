"""Compile every csrc/cuda/*.cu as setup.py does on a GPU machine, and reject register spills.

The flags are setup.py's: csrc/cuda/nvcc_flags.txt (read through setup.nvcc_flags's format),
torch's own COMMON_NVCC_FLAGS and defines, and the -gencode of TORCH_CUDA_ARCH_LIST (default
9.0, the H100/H200). `-Xptxas -v` is added to read the registers, stack and spills of every
kernel; any spill in a kernel of the selection step (files trace_ratio_*) fails the check.
Usage: python .ci/nvcc_check.py [--table FILE] [.cu files]  (no GPU needed)."""
import argparse
import glob
import os
import re
import subprocess
import sys

import torch
import torch.utils.cpp_extension as cpp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPILL_FREE = "trace_ratio_"   # files whose kernels must not spill


def nvcc_flags(kind):
    lines = open(os.path.join(ROOT, "csrc", "cuda", "nvcc_flags.txt")).read().splitlines()
    table = dict(line.split(":", 1) for line in lines if line.strip() and not line.startswith("#"))
    return table["all"].split() + table[kind].split()


def command(path, kind="release"):
    arch = os.environ.get("TORCH_CUDA_ARCH_LIST", "9.0").replace(".", "")
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    # What BuildExtension adds around the extension's own flags (torch/utils/cpp_extension.py).
    torch_flags = [f"-I{p}" for p in cpp.include_paths()] + cpp.COMMON_NVCC_FLAGS + [
        "-DTORCH_API_INCLUDE_EXTENSION_H", "-DTORCH_EXTENSION_NAME=_C",
        "-DPy_LIMITED_API=0x030A0000", f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
        "--compiler-options", "-fPIC", f"-gencode=arch=compute_{arch},code=sm_{arch}"]
    # The CPU torch has no CUDA cmake header; the GPU build has it (see docs/DEVELOPING.md).
    return (["nvcc", "-c", path, "-o", os.devnull, f"-I{ROOT}/csrc",
             "-DC10_CUDA_NO_CMAKE_CONFIGURE_FILE", "-Xptxas", "-v"] + torch_flags + nvcc_flags(kind))


def kernels(ptxas_log):
    """(demangled function, registers, stack bytes, spill store bytes, spill load bytes)."""
    rows, name, frame = [], None, None
    for line in ptxas_log.splitlines():
        m = re.search(r"Function properties for (\S+)", line)
        if m:
            name = m.group(1)
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads",
                      line)
        if m:
            frame = tuple(int(g) for g in m.groups())
        m = re.search(r"Compiling entry function '(\S+)'", line)
        if m:
            name = m.group(1)
        m = re.search(r"Used (\d+) registers", line)
        if m and name and frame:
            rows.append([name, int(m.group(1)), *frame])
            name = frame = None
    if rows:
        names = subprocess.run(["c++filt"], input="\n".join(r[0] for r in rows), text=True,
                               capture_output=True).stdout.splitlines()
        for r, n in zip(rows, names):
            r[0] = n
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="*")
    ap.add_argument("--table", help="write the ptxas figures of the step kernels here")
    args = ap.parse_args()
    files = args.files or sorted(glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cu")))
    # The debug flags must be accepted too (FISHERMASK_DEBUG=1); a runtime-only file checks them.
    probe = os.path.join(ROOT, "build", "nvcc_probe.cu")
    os.makedirs(os.path.dirname(probe), exist_ok=True)
    open(probe, "w").write("__global__ void probe(int* p) { *p = 1; }\n")
    for kind in ("release", "debug"):
        run = subprocess.run(["nvcc", "-c", probe, "-o", os.devnull] + nvcc_flags(kind),
                             capture_output=True, text=True)
        if run.returncode:
            sys.exit(f"nvcc rejects the {kind} flags {nvcc_flags(kind)}:\n{run.stderr}")
    failed, table = [], []
    for path in files:
        print("nvcc -c", os.path.relpath(path, ROOT), flush=True)
        run = subprocess.run(command(path), capture_output=True, text=True)
        if run.returncode:
            print(run.stdout[-5000:], run.stderr[-20000:])
            sys.exit(f"nvcc failed on {path}")
        for name, regs, stack, st, ld in kernels(run.stderr):
            if os.path.basename(path).startswith(SPILL_FREE):
                table.append(f"{regs:4d} regs {stack:6d} B stack {st:6d}/{ld:6d} B spill st/ld  {name}")
                if st or ld:
                    failed.append(f"{name}: {st} B spill stores, {ld} B spill loads")
    print("\n".join(table))
    if args.table:
        open(args.table, "w").write("\n".join(table) + "\n")
    if failed:
        sys.exit("register spills in the step kernels:\n  " + "\n  ".join(failed))


if __name__ == "__main__":
    main()
