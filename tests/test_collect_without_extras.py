"""The GPU machine's image has torch but none of the adapters' frameworks: collecting the whole
suite there (benchmarks/gpu_check.sh runs `pytest tests -k cuda`) must skip the adapter modules,
not stop on import errors."""
import pathlib
import subprocess
import sys

import pytest

from fishermask_ext.testing import subprocess_env

pytestmark = pytest.mark.slow     # collects the adapter tests in a subprocess

# The frameworks the adapter tests import; each is replaced by a module whose import fails as a
# missing package's does (ModuleNotFoundError: pytest.importorskip skips on that one only).
EXTRAS = ["baal", "modAL", "skactiveml", "skorch", "sklearn"]


def test_collection_skips_adapters_without_their_frameworks(tmp_path):
    for name in EXTRAS:
        (tmp_path / f"{name}.py").write_text(f"raise ModuleNotFoundError({name!r})\n")
    env = subprocess_env()
    env["PYTHONPATH"] = f"{tmp_path}:{env.get('PYTHONPATH', '')}"
    run = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                          "-p", "no:cacheprovider", "tests/adapters"],
                         capture_output=True, text=True, env=env, timeout=300,
                         cwd=pathlib.Path(__file__).parents[1])
    assert run.returncode in (0, 5), run.stdout[-3000:] + run.stderr[-3000:]   # 5: none collected
    assert "error" not in run.stdout.lower().splitlines()[-1], run.stdout[-3000:]
