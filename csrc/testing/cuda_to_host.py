"""Builds csrc/cuda's kernels as host C++ on csrc/testing/cuda_on_cpu.h (tests/cuda_on_cpu).

Each .cu file (with the .cuh files it includes inlined) becomes one .cpp whose only changes are
mechanical: `kernel<<<grid, block, shared, stream>>>(args)` becomes
`(::cuda_on_cpu::note_launch("kernel"), ::cuda_on_cpu::launch(kernel, grid, block, shared,
stream))(args)`, and
`extern __shared__ T name[];` becomes a pointer to the launch's dynamic shared memory. A variant
compiles the same files into its own op namespace (and C++ namespace, so that variants do not
share symbols), optionally after textual mutations: the planted bugs of the tests.
"""
import os
import re

import torch.utils.cpp_extension as cpp

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CSRC = os.path.join(ROOT, "csrc")
BUILD = os.path.join(ROOT, "build", "cuda_on_cpu")
FLAGS = ["-O1", "-g0", "-std=c++20", "-w", "-fno-strict-aliasing"]


def _kernel_start(text, end):
    """Index where the kernel expression before `<<<` (at `end`) starts: a qualified name with
    template arguments, e.g. `cuda_kernels::step_kernel<T, kC>`."""
    i = end
    while text[i - 1].isspace():
        i -= 1
    while True:
        if text[i - 1] == ">":                      # template arguments: match the angle brackets
            depth = 0
            while True:
                i -= 1
                depth += {">": 1, "<": -1}.get(text[i], 0)
                if depth == 0:
                    break
            while text[i - 1].isspace():
                i -= 1
        j = i
        while text[j - 1].isalnum() or text[j - 1] in "_:":
            j -= 1
        if j == i:
            return i
        i = j
        if not text[i - 1].isspace() and text[i - 1] != ">":
            return i


def host_text(text):
    """The mechanical rewrite of one CUDA source text."""
    text = re.sub(r"extern\s+__shared__\s+(?:__align__\(\d+\)\s+)?([\w:]+)\s+(\w+)\s*\[\s*\]\s*;",
                  r"\1* \2 = ::cuda_on_cpu::dynamic_shared<\1>();", text)
    while "<<<" in text:
        at = text.index("<<<")
        start = _kernel_start(text, at)
        close = text.index(">>>", at)
        # The kernel's own name (no namespace, no template arguments) is noted before the
        # launch, so that a test can check that every __global__ ran: (note, launch)(args).
        name = re.sub(r"<.*", "", text[start:at], flags=re.S).split("::")[-1].strip()
        text = (text[:start] + f'(::cuda_on_cpu::note_launch("{name}"), ::cuda_on_cpu::launch(' +
                text[start:at] + ", " + text[at + 3:close] + "))" + text[close + 3:])
    return text


def _inlined(path, mutations, seen):
    """The file's text with its csrc/cuda .cuh includes inlined (each once), mutated."""
    text = open(path).read()
    rel = os.path.relpath(path, ROOT)
    for file, old, new in mutations:
        if file == rel:
            if text.count(old) != 1:
                raise ValueError(f"mutation {old!r} must occur once in {rel}")
            text = text.replace(old, new)

    def include(m):
        target = os.path.join(CSRC, m.group(1))
        if target in seen:
            return ""
        seen.add(target)
        return (_inlined(target, mutations, seen) + f'\n#line {text.count(chr(10), 0, m.start()) + 2} "{rel}"\n')
    return f'#line 1 "{rel}"\n' + re.sub(r'^#include "(cuda/\w+\.cuh)"$', include, text,
                                         flags=re.M)


def _write(path, text):
    """Writes only on a change, so that ninja keeps what it built."""
    if os.path.exists(path) and open(path).read() == text:
        return
    with open(path, "w") as f:
        f.write(text)


def sources(namespace, files, mutations=(), out=os.path.join(BUILD, "src")):
    """Generated .cpp files of one variant: its schemas (csrc/ops.cpp in `namespace`) and the
    given CUDA files (names in csrc/cuda, or paths under csrc such as
    "testing/shim_selftest.cu"), all under namespace `namespace`, written into `out`."""
    os.makedirs(out, exist_ok=True)
    head = (f"#define FM_SHIM_NAMESPACE {namespace}\n#define fishermask_ext {namespace}\n"
            '#include "cuda_on_cpu.h"\n')
    schemas = open(os.path.join(CSRC, "ops.cpp")).read()
    schemas = schemas.replace("PyInit__C(", f"PyInit__C_{namespace}(").replace(
        "TORCH_LIBRARY(fishermask_ext,", f"TORCH_LIBRARY({namespace},")
    paths = [os.path.join(out, f"{namespace}__ops.cpp")]
    _write(paths[0], head + '#line 1 "csrc/ops.cpp"\n' + schemas)
    for name in files:
        base = os.path.splitext(os.path.basename(name))[0]
        path = os.path.join(out, f"{namespace}__{base}.cpp")
        source = os.path.join(CSRC, name if "/" in name else os.path.join("cuda", name))
        _write(path, head + host_text(_inlined(source, mutations, set())))
        paths.append(path)
    return paths


def build(variants):
    """Compiles and loads one library holding every variant: {namespace: (files, mutations)}.
    Returns the path of the library; its ops are torch.ops.<namespace>.*"""
    srcs = [os.path.join(CSRC, "testing", f) for f in ("cuda_on_cpu.cpp", "cuda_on_cpu_fibers.cpp")]
    for namespace, (files, mutations) in variants.items():
        srcs += sources(namespace, files, mutations)
    os.makedirs(BUILD, exist_ok=True)
    cpp.load("fishermask_cuda_on_cpu", srcs, extra_cflags=FLAGS,
             extra_include_paths=[os.path.join(CSRC, "testing", "include"),
                                  os.path.join(CSRC, "testing"), CSRC],
             build_directory=BUILD, is_python_module=False, verbose=False)
    return os.path.join(BUILD, "fishermask_cuda_on_cpu.so")
