"""fishermask_ext.testing, the tests' and benchmarks' shared helpers: it ships in the package,
so it must import where pytest is not installed; and its tolerance rule keeps its promises."""
import subprocess
import sys

import pytest
import torch

from fishermask_ext.testing import network_terms, subprocess_env, tol

# A meta-path finder first in line that refuses pytest (and _pytest) as a missing package would.
BLOCK_PYTEST = """
import sys
class NoPytest:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("pytest", "_pytest"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, NoPytest())
"""


def _run(code):
    return subprocess.run([sys.executable, "-c", BLOCK_PYTEST + code], capture_output=True,
                          text=True, env=subprocess_env(), timeout=300)


def test_fishermask_ext_testing_imports_without_pytest():
    run = _run("import fishermask_ext.testing as t\n"
               "import torch\n"
               "assert t.tol(torch.float64, terms=3)['rtol'] > 0\n"
               "assert 'pytest' not in sys.modules and '_pytest' not in sys.modules\n")
    assert run.returncode == 0, run.stderr[-3000:]


def test_the_block_itself_works():
    """Without this, a finder that blocks nothing would let the test above pass vacuously."""
    run = _run("import pytest\n")
    assert run.returncode != 0 and "No module named 'pytest'" in run.stderr, run.stderr[-3000:]


def test_tol_admits_another_summation_order_and_rejects_float32():
    """The rule's two promises: K terms summed in any float64 order stay within
    tol(float64, terms=K), and the same sum done in float32 does not."""
    x = torch.randn(1000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    bound = tol(torch.float64, terms=len(x), magnitude=x.abs().sum())
    in_order = torch.zeros((), dtype=torch.float64)
    for v in x:                                        # recursive summation, the worst case
        in_order += v
    torch.testing.assert_close(x.flip(0).sum(), in_order, **bound)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(x.float().sum().double(), in_order, **bound)


def test_network_terms_counts_the_chain():
    """nn.Linear(5, 3): 5 terms forward, 3 backward, 1 position, 3 classes; the Fisher diagonal
    over 2 samples squares (twice) and sums over 2 samples and 3 classes."""
    model, x = torch.nn.Linear(5, 3), torch.randn(2, 5)
    assert network_terms(model, x) == 5 + 3 + 1 + 3
    assert network_terms(model, x, fisher=True) == 2 * 12 + 2 * 3
    assert network_terms(torch.nn.Conv2d(2, 3, 3), torch.randn(1, 2, 5, 5), product=True) == 9
    assert model.training                              # left in the mode it was in
