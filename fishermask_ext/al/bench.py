"""`fishermask bench`: the benchmarks of benchmarks/ under pytest-benchmark, as a command.

    fishermask bench --list              # every benchmark, and the estimated time of a full run
    fishermask bench --quick             # every benchmark at its smoke sizes, one thread each
    fishermask bench -k select           # full sizes; arguments it does not know go to pytest

Every run writes its table (results.md, results.json), pytest-benchmark's own JSON and, when the
selection benchmarks ran, a plot of time against pool size (select-time.png) into one folder.
The pytest child runs in a process group of its own: SIGTERM or Ctrl-C of this command stops
the whole group (pytest and the processes its benchmarks started) before it exits.
"""
import ast
import contextlib
import glob
import io
import os
import signal
import subprocess
import sys
import time

from . import bench_report

__all__ = ["add_arguments", "run", "collect", "estimate_minutes", "run_child", "group_running"]

USAGE = """Runs benchmarks/ (a source checkout) with pytest-benchmark: full sizes by default,
the smoke sizes of the CI pass with --quick. Every argument this command does not know goes to
pytest unchanged, e.g. `-k select`, `-k "pool_size and native"`, `-x`, `-s`, or a
pytest-benchmark option such as `--benchmark-min-rounds=5`."""
GRACE_S = 10    # after SIGTERM, how long the pytest group may take to exit before SIGKILL


def add_arguments(parser):
    """The bench flags on its argparse subparser (the rest of the command line goes to pytest)."""
    parser.add_argument("--quick", action="store_true",
                        help="every benchmark at its smoke sizes (the CI pass), timed, one "
                             "thread per process unless OMP_NUM_THREADS is set: under a minute")
    parser.add_argument("--list", action="store_true",
                        help="list the benchmarks and the estimated time of a full run, run "
                             "nothing")
    parser.add_argument("--out", default=None,
                        help="folder for results.md, results.json, select-time.png and "
                             "pytest-benchmark.json (default ./results/bench-<quick|full>-"
                             "<date-time>; an existing folder is refused)")


def _checkout():
    """(checkout root, its benchmarks folder), or a clear error outside a source checkout."""
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    bench_dir = os.path.join(root, "benchmarks")
    if not os.path.isdir(bench_dir):
        raise FileNotFoundError(f"no benchmarks folder at {bench_dir}; `fishermask bench` runs "
                                f"from a source checkout (git clone, then bash .ci/setup)")
    return root, bench_dir


class _Collector:
    """pytest plugin: the selected and the deselected (-k, -m) items of a collection."""

    def __init__(self):
        self.selected, self.deselected = [], []

    def pytest_deselected(self, items):
        self.deselected += items

    def pytest_collection_finish(self, session):
        self.selected = list(session.items)


def _describe(item):
    """(node id, file name, uses the benchmark fixture, skip reason or None) of a pytest item."""
    skip = next((m.kwargs.get("reason", "skipped") for m in item.iter_markers("skipif")
                 if m.args and m.args[0] is True), None)
    skip = skip or next((m.kwargs.get("reason", "skipped") for m in item.iter_markers("skip")),
                        None)
    return (item.nodeid, os.path.basename(str(item.path)),
            "benchmark" in getattr(item, "fixturenames", ()), skip)


def collect(pytest_args=()):
    """(selected, deselected): the benchmarks of benchmarks/ that `pytest_args` select, and
    those its -k/-m leave out, as (node id, file, is a benchmark, skip reason) tuples."""
    import pytest                       # only bench needs pytest
    root, bench_dir = _checkout()
    plugin = _Collector()
    with contextlib.redirect_stdout(io.StringIO()) as quiet, _cwd(root):
        code = pytest.main([bench_dir, "--collect-only", "-q", "-p", "no:cacheprovider",
                            *pytest_args], plugins=[plugin])
    if code not in (0, 5):              # 5: nothing collected
        raise ValueError(f"pytest could not collect the benchmarks with arguments "
                         f"{list(pytest_args)}:\n{quiet.getvalue()[-2000:]}")
    keep = lambda items: [d for d in map(_describe, items) if d[2]]   # noqa: E731
    return keep(plugin.selected), keep(plugin.deselected)


@contextlib.contextmanager
def _cwd(path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def file_minutes():
    """{bench file: FULL_RUN_MINUTES} read from each file's source (not imported)."""
    out = {}
    for path in sorted(glob.glob(os.path.join(_checkout()[1], "bench_*.py"))):
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        for node in tree.body:
            if (isinstance(node, ast.Assign) and len(node.targets) == 1
                    and getattr(node.targets[0], "id", None) == "FULL_RUN_MINUTES"):
                out[os.path.basename(path)] = ast.literal_eval(node.value)
    return out


def estimate_minutes(selected, deselected):
    """(minutes, {file: minutes}): each file's FULL_RUN_MINUTES, prorated by the share of its
    benchmarks that are selected and not skipped here; files without an estimate count 0."""
    minutes, per_file = file_minutes(), {}
    for name in sorted({d[1] for d in selected}):
        mine = [d for d in selected if d[1] == name]
        total = len(mine) + sum(d[1] == name for d in deselected)
        run_here = sum(d[3] is None for d in mine)
        if name in minutes and run_here:
            per_file[name] = minutes[name] * run_here / total
    return sum(per_file.values()), per_file


def _list(pytest_args):
    selected, deselected = collect(pytest_args)
    minutes = file_minutes()
    for name in sorted({d[1] for d in selected}):
        est = f"about {minutes[name]} min at full size" if name in minutes else "no estimate"
        print(f"{name} ({est})")
        for nodeid, _, _, skip in (d for d in selected if d[1] == name):
            print(f"  {nodeid.split('::', 1)[1]}" + (f"   [skipped here: {skip}]" if skip else ""))
    total, _ = estimate_minutes(selected, deselected)
    print(f"{len(selected)} benchmarks; a full run of these takes about {total:.0f} min on the "
          f"project's 2-core CPU machine (FULL_RUN_MINUTES of each file), --quick under a minute")
    return 0


def _out_folder(out, quick):
    out = out or os.path.join("results", time.strftime(
        f"bench-{'quick' if quick else 'full'}-%Y%m%d-%H%M%S"))
    if os.path.exists(out):
        raise FileExistsError(f"--out {out} already exists; bench never overwrites results: "
                              f"pass a new folder")
    parent = os.path.dirname(os.path.abspath(out))
    while not os.path.isdir(parent):     # the nearest existing folder must be writable
        parent = os.path.dirname(parent)
    if not os.access(parent, os.W_OK):
        raise PermissionError(f"--out {out}: cannot create folders in {parent}; pass a folder "
                              f"you can write")
    return os.path.abspath(out)


def run(args):
    """The `fishermask bench` command; returns the exit status."""
    if args.list:
        return _list(args.pytest_args)
    root, bench_dir = _checkout()
    out = _out_folder(args.out, args.quick)
    raw = os.path.join(out, "pytest-benchmark.json")
    if args.quick:
        print("[bench] every benchmark at its smoke sizes: under a minute", flush=True)
    else:
        total, per_file = estimate_minutes(*collect(args.pytest_args))
        print(f"[bench] full sizes: about {total:.0f} min on the project's 2-core CPU machine ("
              + ", ".join(f"{k} {v:.0f}" for k, v in per_file.items()) + "); "
              "`fishermask bench --quick` runs every benchmark at smoke sizes in under a minute",
              flush=True)
    os.makedirs(out)
    cmd = [sys.executable, "-m", "pytest", bench_dir, "--benchmark-enable", "--benchmark-only",
           "-p", "no:cacheprovider", f"--benchmark-json={raw}",
           *(["--smoke-sizes"] if args.quick else []), *args.pytest_args]
    env = None
    if args.quick and "OMP_NUM_THREADS" not in os.environ:
        # Smoke sizes check the code paths, not speed: one thread per process, so that OpenMP
        # threads never wait for cores other jobs hold (2 threads on the shared 2-core machine:
        # 122 s; 1 thread: 46 s). bench_scale's workers still set their own thread counts.
        env = dict(os.environ, OMP_NUM_THREADS="1")
    t0 = time.perf_counter()
    code = run_child(cmd, root, env=env)
    print(f"[bench] pytest exited with status {code} after {time.perf_counter() - t0:.1f} s",
          flush=True)
    if code >= 128:
        # pytest-benchmark opens its JSON file when the session starts: a stopped run leaves
        # it empty or partial, so there is no table to write.
        kept = "removed it, empty" if _drop_if_empty(out, raw) else "it keeps what pytest left"
        print(f"[bench] stopped: no table written ({out}: {kept})", flush=True)
        return code
    try:
        paths = bench_report.write(raw, out, command=["fishermask", "bench", *sys.argv[2:]],
                                   quick=args.quick)
    except (OSError, ValueError) as exc:     # pytest failed before it wrote the JSON
        if _drop_if_empty(out, raw):
            print(f"[bench] nothing was measured (pytest status {code}); removed the empty "
                  f"folder {out}", flush=True)
        else:
            print(f"[bench] no table written: {exc}", flush=True)
    else:
        print("[bench] wrote " + ", ".join(paths.values()))
    return code


def _drop_if_empty(out, raw):
    """Remove `out` (True) when it holds nothing but the empty JSON file pytest-benchmark opens
    at the start of a session: a failed run must not leave an empty results folder."""
    if os.path.isfile(raw) and os.path.getsize(raw) == 0:
        os.remove(raw)
    if os.listdir(out):
        return False
    os.rmdir(out)
    return True


class _Stop(Exception):
    """Raised by the SIGTERM handler so the child is stopped on the way out."""


def _on_sigterm(signum, frame):
    raise _Stop()


def run_child(cmd, cwd, env=None):
    """Run `cmd` in a new process group and return its exit status. On SIGTERM or Ctrl-C of
    this process the whole group gets SIGTERM (SIGKILL after GRACE_S) and this returns only
    once nothing of the group runs, with status 128 + the signal: no benchmark keeps running
    after its parent is gone."""
    # process_group=0: the child leads a group of its own, so one killpg reaches pytest and
    # every process its benchmarks started, and no other process of the caller's group.
    child = subprocess.Popen(cmd, cwd=cwd, env=env, process_group=0)
    print(f"[bench] pytest running as pid {child.pid}", file=sys.stderr, flush=True)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    status = None
    try:
        status = child.wait()
    except KeyboardInterrupt:
        status = 128 + signal.SIGINT
    except _Stop:
        status = 128 + signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, previous)
        # A signal, any other way out before pytest ended, or a pytest killed by a signal:
        # stop what is left of its group. A pytest that exited by itself cleaned up after itself.
        if status is None or not 0 <= status < 128:
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
    print(f"[bench] stopped pytest (pid {child.pid}) and its process group", file=sys.stderr,
          flush=True)
