"""`python -m fishermask_ext info`, `fishermask --version`, and importing the package without
initialising CUDA (issue 23, item 3). The subprocess tests block modules with a meta-path finder,
as a missing build or a missing extra would."""
import subprocess
import sys
import textwrap

import pytest
import torch

import fishermask_ext
from fishermask_ext import info
from fishermask_ext.al import cli
from fishermask_ext.ops import native_available, reference
from fishermask_ext.testing import subprocess_env

# The package run as `python -m fishermask_ext ...` with the compiled ops and the al extra's
# dependencies unimportable: a checkout never built, installed without [al].
WITHOUT_BUILD = textwrap.dedent("""
    import runpy, sys
    class Block:
        def find_spec(self, name, path=None, target=None):
            if (name == "fishermask_ext.ops._C"
                    or name.split(".")[0] in ("sklearn", "matplotlib", "tqdm")):
                raise ImportError("blocked by the test: " + name)
    sys.meta_path.insert(0, Block())
    sys.argv = ["fishermask_ext", *sys.argv[1:]]
    runpy.run_module("fishermask_ext", run_name="__main__")
""")
NOT_LOADED = "the compiled ops did not load (blocked by the test: fishermask_ext.ops._C)"


def _without_build(*argv, cwd=None):
    return subprocess.run([sys.executable, "-c", WITHOUT_BUILD, *argv], capture_output=True,
                          text=True, timeout=300, env=subprocess_env(), cwd=cwd)


def test_info_lists_versions_kernels_isa_threads_and_archs(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"fishermask_ext {fishermask_ext.__version__} (")
    assert f"torch {torch.__version__}" in out
    assert f"torch's choice {torch.backends.cpu.get_cpu_capability()}" in out
    if native_available("cpu"):
        assert f"CPU instruction set: the kernels' choice {torch.ops.fishermask_ext.cpu_isa()} (" \
            in out
    else:
        assert "CPU instruction set: torch's choice" in out
    assert f"threads: {torch.get_num_threads()} (torch.get_num_threads()" in out
    assert "CUDA archs built: " in out
    table = out[out.index("\nop "):].splitlines()[2:]
    assert [line.split()[0] for line in table] == reference.__all__
    cpu = {line.split()[0]: line.split()[1] for line in table}
    assert cpu["greedy_select"] == ("native" if native_available("cpu") else "twin")


@pytest.mark.parametrize("record, line", [
    (dict(torch="2.13.0", cuda=False, cuda_archs=None),
     "CUDA archs built: none (not built with CUDA: a CPU-only build)"),
    (dict(torch="2.13.0", cuda=True, cuda_archs=["sm_80", "sm_90"], TORCH_CUDA_ARCH_LIST="8.0;9.0"),
     "CUDA archs built: sm_80, sm_90 (TORCH_CUDA_ARCH_LIST=8.0;9.0)"),
    (None, "CUDA archs built: not recorded"),
], ids=["cpu-build", "cuda-build", "no-record"])
def test_archs_come_from_the_build_record(monkeypatch, record, line):
    if not native_available("cpu"):
        pytest.skip("the record is reported for a loaded build")
    monkeypatch.setattr(info, "build_record", lambda: record)
    assert any(printed.startswith(line) for printed in info.report())


def test_cpu_isa_op_names_the_kernels_choice():
    """The cpu_isa op (no tensor arguments: one CompositeExplicitAutograd kernel) says which
    instruction set csrc/cpu/isa.h chose; torch.ops calls it with no device to dispatch on."""
    if not native_available("cpu"):
        pytest.skip("the op is in the native build")
    assert torch.ops.fishermask_ext.cpu_isa() in ("v4", "v3", "base")
    assert torch.ops.fishermask_ext.cpu_isa.default() == torch.ops.fishermask_ext.cpu_isa()


@pytest.mark.parametrize("isa", ["base", "v3"])
def test_info_prints_the_isa_forced_by_the_environment(isa):
    """FISHERMASK_CPU_ISA caps the kernels' choice when the process starts (the narrower-ISA
    tests use it: tests/testing.py run_under_narrower_isas); info prints the capped choice,
    read from the op. base is the narrowest, every x86-64 CPU has it; v3 caps AVX-512 only."""
    if not native_available("cpu"):
        pytest.skip("the op is in the native build")
    res = subprocess.run([sys.executable, "-m", "fishermask_ext", "info"], capture_output=True,
                         text=True, timeout=300, env={**subprocess_env(), "FISHERMASK_CPU_ISA": isa})
    assert res.returncode == 0, res.stderr[-3000:]
    line = next(line for line in res.stdout.splitlines()
                if line.startswith("CPU instruction set: "))
    wide = torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")
    expected = "base" if isa == "v3" and not wide else isa     # v3 asked of a CPU without AVX2
    assert line.startswith(f"CPU instruction set: the kernels' choice {expected} ("
                           f"{info._ISA_NAMES[expected]}; capped by FISHERMASK_CPU_ISA={isa}"), line


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"fishermask {fishermask_ext.__version__}"


def test_info_without_the_native_build_says_the_twins_run_and_warns_once(tmp_path):
    res = _without_build("info", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "native ops: NOT loaded (blocked by the test: fishermask_ext.ops._C); every op runs " \
           "its PyTorch twin" in res.stdout
    table = res.stdout[res.stdout.index("\nop "):].splitlines()[2:]
    assert all(line.split()[1] == "twin" for line in table), table
    assert res.stderr.count(NOT_LOADED) == 1, res.stderr
    assert "RuntimeWarning" in res.stderr


def test_bench_without_the_native_build_times_the_twin(tmp_path):
    res = _without_build("bench", "--shape", "60,3,8", "--budget", "2", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    engines = [line.split()[0] for line in res.stdout.splitlines()
               if line.startswith(("native", "twin"))]
    assert engines == ["twin"]
    assert "no native kernels for cpu: the twin only" in res.stdout
    assert res.stderr.count(NOT_LOADED) == 1, res.stderr


# Every call of torch.cuda._lazy_init (what initialises CUDA) while the package imports.
NO_CUDA_INIT = textwrap.dedent("""
    import traceback
    import torch, torch.cuda
    calls, lazy_init = [], torch.cuda._lazy_init
    def recorded(*args, **kwargs):
        calls.append("".join(traceback.format_stack()))
        return lazy_init(*args, **kwargs)
    torch.cuda._lazy_init = recorded
    import fishermask_ext, fishermask_ext.info, fishermask_ext.bench, fishermask_ext.al.cli
    assert not calls, calls[0]
    assert not torch.cuda.is_initialized()
    print("ok")
""")


def test_importing_the_package_does_not_initialise_cuda():
    res = subprocess.run([sys.executable, "-c", NO_CUDA_INIT], capture_output=True, text=True,
                         timeout=300, env=subprocess_env())
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-3000:]
