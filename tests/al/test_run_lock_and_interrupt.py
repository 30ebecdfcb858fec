"""A results folder has one writer at a time, and Ctrl-C during `fishermask run` says what was
saved and how to resume (status 130, no traceback).

Each test starts its own child and waits for a file it writes when ready (generous bounds, no
timing); only that child is signalled, by its pid."""
import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest
from testing import tiny_run

from fishermask_ext.al import cli
from fishermask_ext.al.lock import FolderBusy, folder_lock

TINY = tiny_run(rounds=2)
READY_BOUND_S = 300      # a loaded shared machine may take minutes to import torch and warm up

HOLD_LOCK = """
import sys
from fishermask_ext.al.lock import folder_lock
with folder_lock(sys.argv[1]):
    open(sys.argv[2], "w").close()
    sys.stdin.read()            # holds the lock until the test closes our stdin
"""

# `fishermask run` whose first round, once saved, waits for the test's SIGINT.
STOP_AFTER_ROUND_0 = """
import signal, sys
from fishermask_ext.al import cli, loop
# As on a terminal: a child of a shell without job control may start with SIGINT ignored.
signal.signal(signal.SIGINT, signal.default_int_handler)
save = loop.ActiveLearningLoop._save
def save_then_wait(self, *args):
    save(self, *args)
    open(sys.argv[1], "w").close()
    while True:
        signal.pause()
loop.ActiveLearningLoop._save = save_then_wait
sys.exit(cli.main(sys.argv[2:]))
"""


def _wait_ready(child, ready):
    deadline = time.monotonic() + READY_BOUND_S
    while not os.path.exists(ready):
        if child.poll() is not None:
            pytest.fail(f"the child exited with {child.returncode} before it was ready: "
                        f"{child.stderr.read() if child.stderr else ''}")
        assert time.monotonic() < deadline, "the child was not ready in time"
        time.sleep(0.05)


def test_a_second_run_into_a_folder_in_use_is_refused_naming_the_pid(tmp_path, capsys):
    """Item 6: two identical runs into one folder both ran."""
    out, ready = tmp_path / "exp", tmp_path / "ready"
    child = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out), str(ready)],
                             stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_ready(child, ready)
        assert cli.main(["run", *TINY, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"{out} is being written by another fishermask run (pid {child.pid})" in err
        assert not (out / "config.json").exists()
    finally:
        child.stdin.close()
        child.wait(timeout=60)
    # The holder has exited: its lock file (with its dead pid) locks nothing.
    assert (out / ".lock").read_text().strip() == str(child.pid)
    assert cli.main(["run", *TINY, "--out", str(out)]) == 0


def test_the_lock_is_held_for_the_whole_block(tmp_path):
    with folder_lock(tmp_path / "exp"):
        with pytest.raises(FolderBusy, match=f"pid {os.getpid()}"):
            with folder_lock(tmp_path / "exp"):
                pass
    with folder_lock(tmp_path / "exp"):       # released at the end of the block
        pass


def test_ctrl_c_says_what_was_saved_and_how_to_resume(tmp_path):
    """Item 8: a 24-line KeyboardInterrupt traceback, status 1."""
    out, ready = tmp_path / "exp", tmp_path / "ready"
    argv = ["run", *TINY, "--out", str(out)]
    child = subprocess.Popen([sys.executable, "-c", STOP_AFTER_ROUND_0, str(ready), *argv],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_ready(child, ready)
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 130, err
    assert "Traceback" not in err, err
    assert (f"fishermask run: interrupted (Ctrl-C); 1 completed round(s) of 1 run(s) are saved "
            f"in {out}") in err
    assert f"continue with: {shlex.join(['fishermask', *argv, '--resume'])}" in err
    # The resume it names finishes the run.
    assert cli.main([*argv, "--resume"]) == 0
    state = json.loads((out / "runs" / "random-seed0" / "state.json").read_text())
    assert state["done"] and len(state["history"]) == 3
