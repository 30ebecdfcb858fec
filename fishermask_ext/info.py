"""`python -m fishermask_ext info` (and `fishermask info`): what this installation can run.

The versions (fishermask_ext, Python, torch, torch's CUDA), whether the compiled ops loaded and
why not, which ops have a native kernel on which device (the others run their PyTorch twins),
the CPU instruction set, the thread count, and the CUDA archs this build holds (recorded by
setup.py at build time in ops/_build_info.json: neither torch nor the module can tell).
"""
import json
import os
import platform

import torch

from . import ops
from ._version import __version__
from .ops import native_available, reference

__all__ = ["add_parser", "run", "report", "build_record"]

DEVICES = ("cpu", "cuda")


def add_parser(sub):
    sub.add_parser("info", help="versions, native kernels per op and device, CPU instruction "
                                "set, threads, CUDA archs built",
                   description=__doc__.split("\n\n")[1].replace("\n", " "))


def build_record():
    """The build's record (setup.py writes it beside the extension), or None."""
    path = os.path.join(os.path.dirname(ops.__file__), "_build_info.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def _extension_lines():
    if ops._IMPORT_ERROR is not None:
        return [f"native ops: NOT loaded ({ops._IMPORT_ERROR}); every op runs its PyTorch twin "
                f"(backend='auto'); {ops._REBUILD}"]
    lines = [f"native ops: loaded from {ops._C.__file__}"]
    record = build_record()
    if record is None:
        lines.append("CUDA archs built: not recorded (this build predates the build record; "
                     "rebuild to record it)")
        return lines
    lines.append(f"built against torch {record['torch']}"
                 + (" (FISHERMASK_DEBUG)" if record.get("debug") else ""))
    if not record["cuda"]:
        lines.append("CUDA archs built: none (not built with CUDA: a CPU-only build)")
    else:
        archs = record["cuda_archs"]
        archs = ", ".join(archs) if isinstance(archs, list) else archs
        asked = record.get("TORCH_CUDA_ARCH_LIST") or "unset: the build machine's GPUs"
        lines.append(f"CUDA archs built: {archs} (TORCH_CUDA_ARCH_LIST={asked})")
    return lines


# The names csrc/cpu/isa.h (and the cpu_isa op, and FISHERMASK_CPU_ISA) give each choice.
_ISA_NAMES = {"v4": "AVX-512: avx512f and avx512dq", "v3": "AVX2 with FMA", "base": "SSE2"}


def _kernels_cpu_isa():
    """The instruction set the CPU kernels chose ("v4", "v3" or "base": the cpu_isa op), or
    None when the native ops did not load or this build predates the op."""
    if ops._IMPORT_ERROR is not None:
        return None
    try:
        return torch.ops.fishermask_ext.cpu_isa()
    except (AttributeError, RuntimeError):      # an older build in place: no such op
        return None


def _cpu_isa_line():
    cap = os.environ.get("FISHERMASK_CPU_ISA")
    capped = f"; capped by FISHERMASK_CPU_ISA={cap}" if cap else ""
    torch_isa = (f"torch's choice {torch.backends.cpu.get_cpu_capability()} "
                 f"(torch.backends.cpu.get_cpu_capability())")
    chosen = _kernels_cpu_isa()
    if chosen is not None:
        return (f"CPU instruction set: the kernels' choice {chosen} "
                f"({_ISA_NAMES.get(chosen, chosen)}{capped}; the cpu_isa op),\n  {torch_isa}")
    return (f"CPU instruction set: {torch_isa};\n  no op reports the one these "
            f"kernels chose (no native build, or one older than the cpu_isa op): csrc/cpu/isa.h "
            f"takes AVX-512 (avx512f and avx512dq),\n  else AVX2 with FMA, else SSE2" + capped)


def _kernel_table():
    """One line per op: native or twin on each device ("-": a device this torch lacks)."""
    names = reference.__all__
    width = max(map(len, names))
    has = {"cpu": True, "cuda": torch.version.cuda is not None}
    lines = ["op".ljust(width) + "".join(f"  {d:<6}" for d in DEVICES)]
    for name in names:
        cells = (("native" if native_available(d, name) else "twin") if has[d] else "-"
                 for d in DEVICES)
        lines.append(name.ljust(width) + "".join(f"  {c:<6}" for c in cells))
    return lines


def report():
    """The lines `info` prints."""
    cuda = torch.cuda.is_available()     # asks the driver; does not initialise CUDA
    threads = os.environ.get("OMP_NUM_THREADS")
    lines = [f"fishermask_ext {__version__} ({os.path.dirname(os.path.abspath(__file__))})",
             f"python {platform.python_version()}, torch {torch.__version__}, CUDA "
             f"{torch.version.cuda or 'none (a CPU-only torch)'}; CUDA devices: "
             + (", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
                if cuda else "none usable"),
             *_extension_lines(),
             _cpu_isa_line(),
             f"threads: {torch.get_num_threads()} (torch.get_num_threads(); OMP_NUM_THREADS="
             f"{threads if threads is not None else 'unset'})",
             "", "native kernels per op and device (twin: the op runs its PyTorch twin there;",
             "-: this torch has no such device):", *_kernel_table()]
    return lines


def run(args=None):
    print("\n".join(report()))
    return 0
