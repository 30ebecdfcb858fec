"""`fishermask run` under torchrun (2 gloo ranks on 127.0.0.1): the Fisher strategies shard their
work, every rank picks the same points, rank 0 writes the results folder, and the curves equal
a one-process run's. Bounded in time; only the processes started here are killed."""
import json
import os
import socket
import subprocess
import sys

import pytest

from fishermask_ext.testing import subprocess_env

pytestmark = pytest.mark.slow     # torchrun worlds of processes

ARGS = ["run", "--dataset", "digits", "--pool-size", "150", "--test-size", "60",
        "--strategies", "fishermask,bait", "--initial", "10", "--query", "5", "--rounds", "2",
        "--seeds", "0", "--epochs", "3", "--no-progress", "--set", "fishermask.n_samples=40"]


def _run(cmd, tmp_path, name):
    env = dict(subprocess_env(), OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
    with open(tmp_path / f"{name}.log", "wb") as log:
        p = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)       # its own group: torchrun's ranks too
        try:
            assert p.wait(timeout=240) == 0, (tmp_path / f"{name}.log").read_text()[-3000:]
        finally:
            if p.poll() is None:
                os.killpg(p.pid, 9)                        # the group of the pid started here
                p.wait()


def _untimed(x):
    """x without its wall-clock fields (keys ending in _s), which differ between runs."""
    if isinstance(x, dict):
        return {k: _untimed(v) for k, v in x.items() if not k.endswith("_s")}
    if isinstance(x, list):
        return [_untimed(v) for v in x]
    return x


def _curves(folder):
    return json.loads((folder / "curves.json").read_text())


def test_run_under_torchrun_matches_one_process(tmp_path):
    pytest.importorskip("sklearn")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    one, two = tmp_path / "one", tmp_path / "two"
    _run([sys.executable, "-m", "fishermask_ext.al.cli", *ARGS, "--out", str(one)], tmp_path,
         "one")
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2",
          "--master-addr=127.0.0.1", f"--master-port={port}", "-m", "fishermask_ext.al.cli",
          *ARGS, "--out", str(two)], tmp_path, "two")
    assert _untimed(_curves(one)) == _untimed(_curves(two))
    for run in (one / "runs").iterdir():       # the labeled sets of every round, too
        assert _untimed(json.loads((run / "state.json").read_text())) == \
            _untimed(json.loads((two / "runs" / run.name / "state.json").read_text()))
    assert not list(tmp_path.glob("two/.rank*"))
