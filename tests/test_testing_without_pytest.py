"""fishermask_ext.testing ships in the package (the benchmarks and users' own tests import it),
so it must import where pytest is not installed."""
import subprocess
import sys

from fishermask_ext.testing import subprocess_env

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
