"""docs/results_tables.py, the script that builds RESULTS.md's tables from `fishermask run`
folders: each table kind runs on real (tiny) run folders and shows what they hold."""
import os
import subprocess
import sys

import pytest
from testing import tiny_run

from fishermask_ext.al import cli
from fishermask_ext.testing import subprocess_env

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "results_tables.py")
TINY = tiny_run("--imbalance", "0:30,1:8,2:8,3:8,4:8,5:8,6:8,7:8,8:8,9:8", strategies=None,
                seeds="0,1", epochs=2)


def _tables(*args, stderr=None):
    done = subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True,
                          env=subprocess_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    if stderr is not None:
        stderr.append(done.stderr)
    return done.stdout


@pytest.mark.slow           # three experiments and a script in a subprocess
def test_summary_ablation_and_minority_tables(tmp_path):
    main, abl = tmp_path / "digits", tmp_path / "digits-abl-none"
    assert cli.main(["run", *TINY, "--strategies", "bait,random", "--out", str(main)]) == 0
    assert cli.main(["run", *TINY, "--strategies", "bait", "--set", "bait.weighting=none",
                     "--out", str(abl)]) == 0
    broken = main / "runs" / "random-seed1" / "state.json"
    broken.write_text('{"strategy": "rand')                 # a run cut off mid-write
    err = []
    summary = _tables("summary", str(main), stderr=err)
    assert "| setting | bait | random |" in summary and "| digits |" in summary
    assert f"skipped {broken}" in err[0]                    # named, and the table still built
    ablation = _tables("ablation", str(main), "--seeds", "0")   # random-seed1 is broken
    rows = [line for line in ablation.splitlines() if line.startswith("| classifier")]
    # One row per (mask, row weight): the main folder's sqrt_p bait and the sibling's none.
    assert len(rows) == 2 and {"`sqrt_p`" in r for r in rows} == {True, False}
    assert all("| 1 | digits" in r for r in rows)            # one seed, as asked
    assert "random (baseline)" in ablation
    minority = _tables("minority", str(main))
    assert "pool" in minority and "bait" in minority
