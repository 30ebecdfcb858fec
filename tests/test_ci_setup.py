"""`.ci/setup` says what it does before each step (it used to be silent for minutes)."""
import os
import stat
import subprocess

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def test_ci_setup_prints_each_step_before_it_runs(tmp_path):
    """Run .ci/setup with a stand-in `python` first on PATH that only reports its arguments:
    every pip call and the final check must come right after a "[setup] ..." line."""
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\necho "CALLED python $*"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    for keep in ("0", "1"):
        env = dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}",
                   FISHERMASK_KEEP_TORCH=keep)
        res = subprocess.run(["bash", os.path.join(ROOT, ".ci", "setup")], env=env,
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        lines = res.stdout.splitlines()
        calls = [i for i, line in enumerate(lines) if line.startswith("CALLED python -m pip")]
        assert len(calls) == (3 if keep == "0" else 2), lines
        for i in calls:
            assert lines[i - 1].startswith("[setup] "), lines
        assert lines[0].startswith("[setup] ")
