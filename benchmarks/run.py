"""The pytest-benchmark suite of this folder as one command (a source checkout only: the
installed package's own `fishermask bench --shape N,C,D --budget K` times selection alone).

    python benchmarks/run.py --list     # every benchmark, and the estimated time of a full run
    python benchmarks/run.py --quick    # every benchmark at its smoke sizes, one thread each
    python benchmarks/run.py -k select  # full sizes; arguments it does not know go to pytest

Every run writes its table (results.md, results.json), pytest-benchmark's own JSON and, when the
selection benchmarks ran, a plot of time against pool size (select-time.png) into one folder.
pytest runs in a process group of its own (run_group.py): SIGTERM or Ctrl-C of this command
stops the whole group before it exits.
"""
import argparse
import ast
import contextlib
import glob
import io
import os
import sys
import time

import run_report
from run_group import run_child

__all__ = ["main", "collect", "estimate_minutes", "file_minutes"]

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH_DIR)
COMMAND = ["python", "benchmarks/run.py"]
USAGE = """Runs benchmarks/ with pytest-benchmark: full sizes by default, the smoke sizes of the
CI pass with --quick. Every argument this command does not know goes to pytest unchanged, e.g.
`-k select`, `-k "pool_size and native"`, `-x`, `-s`, or a pytest-benchmark option such as
`--benchmark-min-rounds=5`."""
# What a bad argument raises: one line on stderr, exit status 2.
USER_ERRORS = (ValueError, TypeError, OSError)


def _parser():
    p = argparse.ArgumentParser(prog="python benchmarks/run.py", description=USAGE,
                                allow_abbrev=False,
                                usage="python benchmarks/run.py [--quick] [--list] [--out DIR] "
                                      "[PYTEST ARGS ...]")
    p.add_argument("--quick", action="store_true",
                   help="every benchmark at its smoke sizes (the CI pass), timed, one thread per "
                        "process unless OMP_NUM_THREADS is set: under a minute")
    p.add_argument("--list", action="store_true",
                   help="list the benchmarks and the estimated time of a full run, run nothing")
    p.add_argument("--out", default=None,
                   help="folder for results.md, results.json, select-time.png and "
                        "pytest-benchmark.json (default ./results/bench-<quick|full>-"
                        "<date-time>; an existing folder is refused)")
    return p


def main(argv=None):
    """The command; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args, pytest_args = _parser().parse_known_args(argv)
    try:
        if args.list:
            return _list(pytest_args)
        return _run(args, pytest_args, argv)
    except USER_ERRORS as exc:
        print(f"benchmarks/run.py: error: {exc}", file=sys.stderr)
        return 2


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
    import pytest                       # here: --help runs without it
    plugin = _Collector()
    with contextlib.redirect_stdout(io.StringIO()) as quiet, _cwd(ROOT):
        code = pytest.main([BENCH_DIR, "--collect-only", "-q", "-p", "no:cacheprovider",
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
    for path in sorted(glob.glob(os.path.join(BENCH_DIR, "bench_*.py"))):
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
        raise FileExistsError(f"--out {out} already exists; benchmarks/run.py never overwrites results: "
                              f"pass a new folder")
    parent = os.path.dirname(os.path.abspath(out))
    while not os.path.isdir(parent):     # the nearest existing folder must be writable
        parent = os.path.dirname(parent)
    if not os.access(parent, os.W_OK):
        raise PermissionError(f"--out {out}: cannot create folders in {parent}; pass a folder "
                              f"you can write")
    return os.path.abspath(out)


def _run(args, pytest_args, argv):
    out = _out_folder(args.out, args.quick)
    raw = os.path.join(out, "pytest-benchmark.json")
    if args.quick:
        print("[benchmarks/run.py] every benchmark at its smoke sizes: under a minute", flush=True)
    else:
        total, per_file = estimate_minutes(*collect(pytest_args))
        print(f"[benchmarks/run.py] full sizes: about {total:.0f} min on the project's 2-core CPU machine ("
              + ", ".join(f"{k} {v:.0f}" for k, v in per_file.items()) + "); "
              "--quick runs every benchmark at smoke sizes in under a minute",
              flush=True)
    os.makedirs(out)
    cmd = [sys.executable, "-m", "pytest", BENCH_DIR, "--benchmark-enable", "--benchmark-only",
           "-p", "no:cacheprovider", f"--benchmark-json={raw}",
           *(["--smoke-sizes"] if args.quick else []), *pytest_args]
    env = None
    if args.quick and "OMP_NUM_THREADS" not in os.environ:
        # Smoke sizes check the code paths, not speed: one thread per process, so that OpenMP
        # threads never wait for cores other jobs hold (2 threads on the shared 2-core machine:
        # 122 s; 1 thread: 46 s). bench_scale's workers still set their own thread counts.
        env = dict(os.environ, OMP_NUM_THREADS="1")
    t0 = time.perf_counter()
    code = run_child(cmd, ROOT, env=env)
    print(f"[benchmarks/run.py] pytest exited with status {code} after {time.perf_counter() - t0:.1f} s",
          flush=True)
    if code >= 128:
        # pytest-benchmark opens its JSON file when the session starts: a stopped run leaves
        # it empty or partial, so there is no table to write.
        kept = "removed it, empty" if _drop_if_empty(out, raw) else "it keeps what pytest left"
        print(f"[benchmarks/run.py] stopped: no table written ({out}: {kept})", flush=True)
        return code
    try:
        paths = run_report.write(raw, out, command=[*COMMAND, *argv], quick=args.quick)
    except (OSError, ValueError) as exc:     # pytest failed before it wrote the JSON
        if _drop_if_empty(out, raw):
            print(f"[benchmarks/run.py] nothing was measured (pytest status {code}); removed the empty "
                  f"folder {out}", flush=True)
        else:
            print(f"[benchmarks/run.py] no table written: {exc}", flush=True)
    else:
        print("[benchmarks/run.py] wrote " + ", ".join(paths.values()))
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


if __name__ == "__main__":
    sys.exit(main())
