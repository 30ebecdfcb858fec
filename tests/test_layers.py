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


# Code outside the package that a module of it must never import: it is not installed.
OUTSIDE = {"benchmarks", "tests", "conftest", "testing", "op_cases"}


def _imports(source, package):
    """The modules `source` (a module of `package`) imports anywhere, top level or inside a
    function, by statement or by importlib.import_module / __import__ of a constant; None for
    such a call with a computed name (the test cannot follow it)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - max(node.level - 1, 0)]
            module = ".".join(base + [node.module]) if node.level and node.module else \
                ".".join(base) if node.level else node.module
            # `from . import x` names modules; `from .m import x` names attributes of m.
            yield from ([f"{module}.{a.name}" for a in node.names] if not node.module
                        else [module])
        elif isinstance(node, ast.Call) and (
                getattr(node.func, "attr", None) == "import_module"
                or getattr(node.func, "id", None) == "__import__"):
            arg = node.args[0] if node.args else None
            yield arg.value if isinstance(arg, ast.Constant) else None


def _floor(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def violations(modules):
    """(wrong imports, modules on no floor) of {dotted module name: (source, is a package)}."""
    wrong, unplaced = [], set()
    for module, (source, is_package) in sorted(modules.items()):
        package = module if is_package else module.rsplit(".", 1)[0]
        here = _floor(module) if module != "fishermask_ext" else "__init__"
        unplaced |= {here} - set(FLOORS)
        for target in _imports(source, package):
            if target is None:
                if FLOORS.get(here) != FLOORS["__init__"]:      # only the front may compute one
                    wrong.append(f"{module} imports a module by a computed name")
                continue
            if target.split(".")[0] in OUTSIDE:
                wrong.append(f"{module} imports {target}, which is not part of the package")
                continue
            if not target.startswith("fishermask_ext.") or _floor(target) == here:
                continue
            there = _floor(target)
            unplaced |= {there} - set(FLOORS)
            if there in FLOORS and here in FLOORS and FLOORS[there] >= FLOORS[here]:
                wrong.append(f"{module} imports {target}")
    return wrong, unplaced


def _package_modules():
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        is_package = rel.name == "__init__"
        modules[".".join(rel.parts[:-1] if is_package else rel.parts)] = (path.read_text(),
                                                                          is_package)
    return modules


def test_no_import_runs_back_up_a_layer():
    wrong, unplaced = violations(_package_modules())
    assert not unplaced, f"modules on no floor (add them to FLOORS and DEVELOPING.md): {unplaced}"
    assert not wrong, "imports that run up a layer or sideways:\n" + "\n".join(wrong)


@pytest.mark.parametrize("module,source,found", [
    ("fishermask_ext.ops.sizes", "def f():\n    from ..select import core\n",
     "fishermask_ext.ops.sizes imports fishermask_ext.select"),
    ("fishermask_ext.al.io", "from ..adapters import _torch\n",
     "fishermask_ext.al.io imports fishermask_ext.adapters"),
    ("fishermask_ext.store.io", "import importlib\nimportlib.import_module('fishermask_ext.nn')\n",
     "fishermask_ext.store.io imports fishermask_ext.nn"),
    ("fishermask_ext.nn.hooks", "import importlib\nimportlib.import_module(name)\n",
     "fishermask_ext.nn.hooks imports a module by a computed name"),
    ("fishermask_ext.bench", "from benchmarks import bench_select\n",
     "fishermask_ext.bench imports benchmarks, which is not part of the package"),
], ids=["up-in-a-function", "sideways", "import_module", "computed-name", "outside"])
def test_the_layer_check_finds_a_planted_import(module, source, found):
    modules = _package_modules()
    modules[module] = (modules[module][0] + "\n" + source, False)
    wrong, _ = violations(modules)
    assert wrong == [found]


def test_a_new_package_must_be_placed():
    modules = {"fishermask_ext.newfloor.thing": ("import torch\n", False)}
    assert violations(modules) == ([], {"newfloor"})


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

