"""Build fishermask_ext: the CPU module always, the CUDA kernels when torch has CUDA.

Environment switches:
  FISHERMASK_FORCE_CUDA=1  build the CUDA kernels even if torch.cuda.is_available() is False
                           (needs a CUDA build of torch and nvcc)
  FISHERMASK_FORCE_CPU=1   never build the CUDA kernels
  FISHERMASK_DEBUG=1       -O0 -g instead of -O3 -g0
Install with `pip install --no-build-isolation -e ".[al]"` after torch (see README); without
`[al]` only the backend's dependencies come (torch, numpy).
"""
import glob
import json
import os

from setuptools import find_packages, setup

import torch
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

HERE = os.path.dirname(os.path.abspath(__file__))
AL_REQUIRES = ["scikit-learn", "matplotlib", "tqdm"]   # the active-learning driver, fishermask_ext.al
# One extra per framework that fishermask_ext.adapters plugs into; `adapters` is all of them.
# Install with `-c .ci/constraints.txt` (torch==2.13.0) so that none of them replaces torch.
# skorch >= 1.2 is what scikit-activeml's torch wrapper (SkorchClassifier) needs. modAL-python
# 0.4.2.1 pins skorch==0.9.0 (whose import needs pkg_resources, gone from setuptools >= 81), so
# with both extras pip settles on modAL 0.4.1, which pins no skorch; the modAL adapter follows
# the query conventions of both versions. baal < 2.1 pins numpy < 2.
ADAPTER_REQUIRES = {"skactiveml": ["scikit-activeml>=1.0", "skorch>=1.2"], "baal": ["baal>=2.1"],
                    "modal": ["modAL-python>=0.4.1"]}


def _version():
    """fishermask_ext/_version.py's __version__ (its one home), read without importing the package."""
    scope = {}
    exec(open(os.path.join(HERE, "fishermask_ext", "_version.py")).read(), scope)
    return scope["__version__"]


def _flag(name):
    return os.environ.get(name, "0") not in ("", "0", "false", "False")


def _use_cuda():
    if _flag("FISHERMASK_FORCE_CPU"):
        return False
    if _flag("FISHERMASK_FORCE_CUDA"):
        if torch.version.cuda is None:
            raise RuntimeError("FISHERMASK_FORCE_CUDA=1 needs a CUDA build of torch "
                               f"(this torch is {torch.__version__})")
        return True
    return torch.version.cuda is not None and torch.cuda.is_available()


def nvcc_flags(kind):
    """csrc/cuda/nvcc_flags.txt's "all" flags and those of `kind` (release or debug)."""
    lines = open(os.path.join(HERE, "csrc", "cuda", "nvcc_flags.txt")).read().splitlines()
    table = dict(line.split(":", 1) for line in lines if line.strip() and not line.startswith("#"))
    return table["all"].split() + table[kind].split()


def _extension():
    debug = _flag("FISHERMASK_DEBUG")
    opt = ["-O0", "-g"] if debug else ["-O3", "-g0"]   # g++ only: nvcc has no -g0
    # -Wno-psabi: the CPU kernels pass AVX-512-wide vectors between always-inlined functions,
    # which GCC flags as an ABI note although no such call survives inlining.
    cxx = opt + ["-std=c++20", "-fopenmp", "-Wno-psabi"]
    sources = sorted(glob.glob(os.path.join("csrc", "*.cpp")) +
                     glob.glob(os.path.join("csrc", "cpu", "*.cpp")))
    kwargs = dict(extra_link_args=["-fopenmp"], include_dirs=[os.path.join(HERE, "csrc")],
                  py_limited_api=True)
    if _use_cuda():
        sources += sorted(glob.glob(os.path.join("csrc", "cuda", "*.cu")))
        nvcc = nvcc_flags("debug" if debug else "release")
        return CUDAExtension("fishermask_ext.ops._C", sources,
                             extra_compile_args={"cxx": cxx, "nvcc": nvcc}, **kwargs)
    return CppExtension("fishermask_ext.ops._C", sources, extra_compile_args={"cxx": cxx}, **kwargs)


class _BuildExt(BuildExtension.with_options(use_ninja=True)):
    """build_ext that also records what it built, next to the extension
    (fishermask_ext/ops/_build_info.json): `python -m fishermask_ext info` reports it, since
    neither torch nor the compiled module can say which CUDA archs this build holds."""

    def build_extensions(self):
        super().build_extensions()
        ext = self.extensions[0]
        path = os.path.join(os.path.dirname(self.get_ext_fullpath(ext.name)), "_build_info.json")
        with open(path, "w") as f:
            json.dump(_build_info(ext), f, indent=1)


def _build_info(ext):
    cuda = any(src.endswith(".cu") for src in ext.sources)
    info = dict(torch=torch.__version__, torch_cuda=torch.version.cuda, cuda=cuda,
                debug=_flag("FISHERMASK_DEBUG"), cuda_archs=None,
                TORCH_CUDA_ARCH_LIST=os.environ.get("TORCH_CUDA_ARCH_LIST"))
    if cuda:
        try:   # the -gencode flags torch's build passes to nvcc (a private helper of torch)
            from torch.utils.cpp_extension import _get_cuda_arch_flags
            flags = _get_cuda_arch_flags()
            info["cuda_archs"] = sorted({f.split("code=")[1] for f in flags if "code=" in f})
        except Exception as exc:     # noqa: BLE001  (a record, never a failed build)
            info["cuda_archs"] = f"unknown ({type(exc).__name__}: {exc})"
    return info


setup(
    name="fishermask_ext",
    version=_version(),
    description="Fused CPU/CUDA kernels for Fisher-information active learning (FisherMask, BAIT)",
    packages=find_packages(include=["fishermask_ext", "fishermask_ext.*"]),
    python_requires=">=3.10",
    # The backend (ops, select, nn) needs torch and numpy only; the driver is an extra.
    install_requires=["torch", "numpy"],
    extras_require={"al": AL_REQUIRES, **ADAPTER_REQUIRES,
                    "adapters": sorted({r for reqs in ADAPTER_REQUIRES.values() for r in reqs}),
                    "test": ["pytest", "pytest-benchmark", *AL_REQUIRES]},   # tests cover al too
    ext_modules=[_extension()],
    cmdclass={"build_ext": _BuildExt},
    entry_points={"console_scripts": ["fishermask=fishermask_ext.al.cli:main"]},
    options={"bdist_wheel": {"py_limited_api": "cp310"}},   # torch builds with Py_LIMITED_API 3.10
)
