"""The pytest child of benchmarks/run.py in a process group of its own: SIGTERM or Ctrl-C of the
runner stops the whole group (pytest and every process its benchmarks started) before the
runner exits, so no benchmark keeps running after its parent is gone."""
import contextlib
import glob
import os
import signal
import subprocess
import sys
import time

__all__ = ["GRACE_S", "run_child", "group_running"]

GRACE_S = 10    # after SIGTERM, how long the pytest group may take to exit before SIGKILL


class _Stop(Exception):
    """Raised by the SIGTERM handler so the child is stopped on the way out."""


def _on_sigterm(signum, frame):
    raise _Stop()


def run_child(cmd, cwd, env=None):
    """Run `cmd` in a new process group and return its exit status. On SIGTERM or Ctrl-C of
    this process the whole group gets SIGTERM (SIGKILL after GRACE_S) and this returns only
    once nothing of the group runs, with status 128 + the signal."""
    # The handler is in place before the child exists and before its pid is announced: a
    # SIGTERM sent as soon as the pid is known stops the group instead of only this process.
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    child = status = None
    try:
        # process_group=0: the child leads a group of its own, so one killpg reaches pytest and
        # every process its benchmarks started, and no other process of the caller's group.
        child = subprocess.Popen(cmd, cwd=cwd, env=env, process_group=0)
        print(f"[benchmarks/run.py] pytest running as pid {child.pid}", file=sys.stderr, flush=True)
        status = child.wait()
    except KeyboardInterrupt:
        status = 128 + signal.SIGINT
    except _Stop:
        status = 128 + signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, previous)
        # A signal, any other way out before pytest ended, or a pytest killed by a signal:
        # stop what is left of its group. A pytest that exited by itself cleaned up after itself.
        if child is not None and (status is None or not 0 <= status < 128):
            _stop_group(child)
    return status


def group_running(pgid):
    """Whether a process of group `pgid` still runs. Zombies do not count: they hold no CPU or
    memory, and reaping the orphans among them is up to init (some containers' never does)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    if not os.path.isdir("/proc"):      # no /proc to tell zombies apart: the group exists
        return True
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                # after the ")" that ends the command name: state, ppid, pgrp, ...
                state, _, pgrp = f.read().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):   # the process ended while we read
            continue
        if int(pgrp) == pgid and state != "Z":
            return True
    return False


def _wait_for_group(child, timeout):
    """Reap `child` and wait until nothing of its group runs; False if `timeout` s pass first."""
    deadline = time.monotonic() + timeout
    while child.poll() is None or group_running(child.pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _stop_group(child):
    """SIGTERM to the child's process group, SIGKILL to what is left of it after GRACE_S; the
    leader is reaped before it returns. Its children, orphaned when the leader exits first,
    stay in the group, so the group (not the leader) is what is waited for."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGTERM)
    if not _wait_for_group(child, GRACE_S):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        # SIGKILL cannot be caught: only a process stuck in the kernel outlives this bound
        _wait_for_group(child, GRACE_S)
    print(f"[benchmarks/run.py] stopped pytest (pid {child.pid}) and its process group", file=sys.stderr,
          flush=True)
