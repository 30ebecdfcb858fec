"""The package's layers: the backend imports without the driver, the driver's names load on
first access (the shared argument checks: tests/test_checks.py)."""
import subprocess
import sys
import textwrap

import pytest

import fishermask_ext
from fishermask_ext.testing import subprocess_env


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

