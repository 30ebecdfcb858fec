"""The package's layers: no import runs back up a layer (docs/DEVELOPING.md, "Layers"); the
backend imports without the driver; the driver's names load on first access (the shared
argument checks: tests/test_checks.py)."""
import ast
import pathlib
import subprocess
import sys
import textwrap

import pytest

import fishermask_ext
from fishermask_ext.testing import subprocess_env


# Each package or top-level module of fishermask_ext and its floor; a module may import its own
# floor and those below, never one above or a sibling on the same floor (al and adapters).
# Every module must be listed, so that new code is placed on purpose (DEVELOPING.md says where).
FLOORS = {"_checks": 0, "_files": 0, "_progress": 0, "_version": 0,
          "ops": 1, "store": 2, "select": 3, "nn": 4, "distributed": 5, "strategies": 6,
          # The `fishermask bench` and `fishermask info` commands need the backend only, so an
          # install without the al extra has them; al's command line lists them.
          "bench": 6, "info": 6,
          "al": 7, "adapters": 7,
          # The front: the package's names (the driver's are lazy, PEP 562), the command, and
          # the test support shared with benchmarks/.
          "__init__": 8, "__main__": 8, "testing": 8}
PACKAGE = pathlib.Path(fishermask_ext.__file__).parent


def _imports(path, package):
    """The fishermask_ext modules `path` imports anywhere (top level or inside a function)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - max(node.level - 1, 0)]
            module = ".".join(base + [node.module]) if node.level and node.module else \
                ".".join(base) if node.level else node.module
            # `from . import x` names modules; `from .m import x` names attributes of m.
            yield from ([f"{module}.{a.name}" for a in node.names] if not node.module
                        else [module])


def _floor(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_no_import_runs_back_up_a_layer():
    wrong, unplaced = [], set()
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        package = module if rel.name == "__init__" else module.rsplit(".", 1)[0]
        here = _floor(module) if rel.name != "__init__" or len(rel.parts) > 2 else "__init__"
        unplaced |= {here} - set(FLOORS)
        for target in _imports(path, package):
            if not target.startswith("fishermask_ext.") or _floor(target) == here:
                continue
            there = _floor(target)
            unplaced |= {there} - set(FLOORS)
            if there in FLOORS and here in FLOORS and FLOORS[there] >= FLOORS[here]:
                wrong.append(f"{module} imports {target}")
    assert not unplaced, f"modules on no floor (add them to FLOORS and DEVELOPING.md): {unplaced}"
    assert not wrong, "imports that run up a layer or sideways:\n" + "\n".join(wrong)


def test_importing_the_backend_loads_no_driver_and_no_driver_dependency():
    code = ("import sys, fishermask_ext; "
            "print(sorted(m for m in sys.modules if m.startswith('fishermask_ext.al') "
            "or m.split('.')[0] in ('sklearn', 'matplotlib')))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True, env=subprocess_env())
    assert res.stdout.strip() == "[]"


# Steps A to E with the driver's dependencies made unimportable, as after `pip install .`.
_WITHOUT_EXTRAS = textwrap.dedent("""
    import sys
    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("sklearn", "matplotlib", "tqdm"):
                raise ImportError("not installed: " + name)
    sys.meta_path.insert(0, Block())
    import torch
    import fishermask_ext as fm
    model = fm.MLP(in_features=6, num_classes=3, hidden=(4,))
    x = torch.randn(10, 6)
    mask = fm.fisher_mask(model, x, pct_top=0.5, n_samples=8)
    X = fm.masked_grad_embeddings(model, x, mask, progress=True)   # no tqdm: no bar
    print(len(fm.select_batch(X, 3)))
""")


def test_the_backend_runs_without_the_al_extra():
    res = subprocess.run([sys.executable, "-c", _WITHOUT_EXTRAS], capture_output=True,
                         text=True, timeout=120, env=subprocess_env())
    assert res.returncode == 0 and res.stdout.strip() == "3", res.stderr


def test_driver_names_load_on_first_access():
    assert fishermask_ext.strategies.get("random").seed == 0
    assert fishermask_ext.run_experiment.__module__ == "fishermask_ext.al.loop"
    assert fishermask_ext.data.__name__ == "fishermask_ext.al.data"
    assert fishermask_ext.report.__name__ == "fishermask_ext.al.report"
    assert "strategies" in dir(fishermask_ext)
    with pytest.raises(AttributeError, match="has no attribute 'loops'"):
        fishermask_ext.loops

