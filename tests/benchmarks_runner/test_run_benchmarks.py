"""benchmarks/run.py (issue 13, item 6; out of the package since issue 23): --quick at smoke
sizes, --list, the time estimate, --help, the table and plot it writes, and SIGTERM / Ctrl-C
stopping its pytest child. Signal tests wait on conditions with generous bounds, never on
sleeps."""
import json
import os
import resource
import signal
import subprocess
import sys
import time

import pytest

import matplotlib
import run as runner
import run_group
import run_report

from fishermask_ext.testing import subprocess_env

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(ROOT, "benchmarks", "run.py")
QUICK_CPU_S = 60     # the "under a minute", as CPU seconds of one thread (see below)
READY_BOUND_S = 300  # a loaded shared machine may take minutes to start pytest


def _cli(*args, **kw):
    env = {k: v for k, v in subprocess_env().items() if k != "OMP_NUM_THREADS"}
    return subprocess.Popen([sys.executable, SCRIPT, *args], cwd=ROOT, env=env, text=True, **kw)


def test_quick_runs_every_benchmark_and_writes_table_and_plot(tmp_path):
    """The CI check of `python benchmarks/run.py --quick`: every benchmark passes at its smoke
    sizes, the table has a row for each one collected, the plot exists. The time limit is
    checked as CPU time of the whole process tree with one thread per process: on this shared
    machine wall time depends on the other jobs, CPU time does not (one idle core: wall <= CPU
    time). --quick itself runs one thread per process when OMP_NUM_THREADS is not set (it is
    unset here)."""
    out = tmp_path / "bench"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = _cli("--quick", "--out", str(out), stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT)
    printed, _ = proc.communicate(timeout=600)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert proc.returncode == 0, printed[-3000:]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert cpu < QUICK_CPU_S, f"--quick used {cpu:.1f} CPU s"
    table = json.loads((out / "results.json").read_text())
    selected, _ = runner.collect()
    ran = [d for d in selected if d[3] is None]                # not skipped on this machine
    assert sorted(r["name"] for r in table["benchmarks"]) == sorted(
        d[0].split("::")[-1] for d in ran)
    assert table["quick"] is True and all(r["min_s"] > 0 for r in table["benchmarks"])
    md = (out / "results.md").read_text()
    assert "smoke sizes" in md and "| test_select_pool_size[native-N/4] |" in md
    png = (out / "select-time.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    points = run_report.series(run_report.rows(
        json.loads((out / "pytest-benchmark.json").read_text())))
    assert {m for m, d in points} == {"native", "twin", "direct"}
    assert [n for n, _, _ in points[("native", "float32")]] == [10, 20, 40]


def test_list_shows_every_benchmark_and_the_estimate(capsys):
    assert runner.main(["--list"]) == 0
    printed = capsys.readouterr().out
    selected, _ = runner.collect()
    for nodeid, *_ in selected:
        assert nodeid.split("::", 1)[1] in printed
    minutes = runner.file_minutes()["bench_select.py"]
    assert f"bench_select.py (about {minutes:.0f} min at full size)" in printed
    assert "a full run of these takes about" in printed


def test_default_run_says_how_long(monkeypatch, tmp_path, capsys):
    """-k pool_size keeps some of bench_select's benchmarks: the estimate is prorated."""
    calls = []
    monkeypatch.setattr(runner, "run_child", lambda cmd, cwd, env=None: calls.append(cmd) or 0)
    assert runner.main(["-k", "pool_size", "--out", str(tmp_path / "b")]) == 0
    printed = capsys.readouterr().out
    minutes = runner.file_minutes()["bench_select.py"]
    kept = sum(f == "bench_select.py" for _, f, *_ in runner.collect(["-k", "pool_size"])[0])
    every = sum(f == "bench_select.py" for _, f, *_ in runner.collect()[0])
    assert 0 < kept < every and f"about {minutes * kept / every:.0f} min" in printed
    cmd = calls[0]
    assert cmd[:3] == [sys.executable, "-m", "pytest"] and cmd[3].endswith("benchmarks")
    assert "--benchmark-only" in cmd and cmd[-2:] == ["-k", "pool_size"]
    assert "--smoke-sizes" not in cmd
    assert any(c.startswith("--benchmark-json=" + str(tmp_path / "b")) for c in cmd)


def test_out_folder_is_checked_first(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(runner, "run_child", lambda cmd, cwd, env=None: pytest.fail("must not run"))
    (tmp_path / "old").mkdir()
    assert runner.main(["--quick", "--out", str(tmp_path / "old")]) == 2
    assert "already exists; benchmarks/run.py never overwrites" in capsys.readouterr().err


def test_help_lists_the_options():
    res = subprocess.run([sys.executable, SCRIPT, "--help"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env=subprocess_env())
    assert res.returncode == 0
    assert "--quick" in res.stdout and "--list" in res.stdout and "PYTEST ARGS" in res.stdout


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_for(condition, what):
    deadline = time.monotonic() + READY_BOUND_S
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {READY_BOUND_S} s"
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_signal_stops_the_pytest_child(tmp_path, sig):
    """Start the runner, signal it once its pytest child runs: the child (and its process
    group) must be gone within a bound. Only pids this test started are signalled."""
    out = tmp_path / "b"
    proc = _cli("--quick", "-k", "pool_size", "--out", str(out),
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    child = None
    try:
        for line in proc.stderr:        # "[benchmarks/run.py] pytest running as pid N", once it handles
            if "pytest running as pid" in line:                       # SIGTERM
                child = int(line.split()[-1])
                break
        assert child is not None and _alive(child)
        # pytest-benchmark opens its JSON file as pytest parses its options: pytest runs now.
        _wait_for(lambda: (out / "pytest-benchmark.json").exists() or not _alive(child),
                  "pytest opening its benchmark JSON")
        proc.send_signal(sig)
        code = proc.wait(timeout=READY_BOUND_S)
        assert code == 128 + sig, proc.stderr.read()[-2000:]
        _wait_for(lambda: not _alive(child), f"pytest child {child} ending after its parent")
        # nothing of its process group runs either (zombies, left for init to reap, hold nothing)
        _wait_for(lambda: not run_group.group_running(child),
                  f"process group {child} ending after its parent")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if child is not None and _alive(child):
            os.killpg(child, signal.SIGKILL)    # the group this test's command created


def test_report_table_and_plot_from_benchmark_json(tmp_path):
    def bench_entry(name, method, n, seconds):
        return dict(name=name, fullname=f"benchmarks/bench_select.py::{name}", group="g",
                    stats=dict(min=seconds, median=seconds, mean=seconds, rounds=3),
                    extra_info=dict(method=method, dtype="float32", pool_size=n, C=3, D=5, K=2,
                                    note=1.5))
    raw = dict(benchmarks=[bench_entry(f"t[{m}-{n}]", m, n, s * n) for m, s in
                           (("native", 1e-3), ("twin", 3e-3)) for n in (20, 10)]
               + [dict(name="other", fullname="benchmarks/bench_embed.py::other", group=None,
                       stats=dict(min=2.0, median=2.0, mean=2.0, rounds=1), extra_info={})],
               machine_info={}, commit_info={})
    path = tmp_path / "raw.json"
    path.write_text(json.dumps(raw))
    paths = run_report.write(str(path), str(tmp_path), command=runner.COMMAND)
    assert set(paths) == {"markdown", "json", "plot"}
    md = (tmp_path / "results.md").read_text()
    assert "| g | t[native-20] | 0.02 | 0.02 | 0.02 | 3 | C=3, D=5, K=2, note=1.5 |" in md
    assert "| other |" in md
    series = run_report.series(run_report.rows(raw))
    assert [p[:2] for p in series[("twin", "float32")]] == [(10, 0.03), (20, 0.06)]
    raw["benchmarks"] = raw["benchmarks"][-1:]              # no selection points: no plot
    path.write_text(json.dumps(raw))
    os.remove(paths["plot"])
    assert "plot" not in run_report.write(str(path), str(tmp_path))
    assert not os.path.exists(paths["plot"])


def test_group_running_sees_a_group_until_it_ends():
    """group_running is what run_child waits on: true while a process of the group runs, false
    once the group's only process is killed and reaped."""
    proc = subprocess.Popen(["sleep", "60"], process_group=0)
    try:
        assert run_group.group_running(proc.pid)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)     # the group this test created
        proc.wait()
    assert not run_group.group_running(proc.pid)


def test_plot_tells_the_dtypes_apart(monkeypatch, tmp_path):
    """Issue 24, item 18: in select-time.png the float64 lines looked like the float32 ones."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figures, close = [], plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: (figures.append(fig), close(fig)))
    table = [dict(name=f"{m}-{d}-{n}", min_s=0.1 * n, extra=dict(method=m, dtype=d,
                                                                 pool_size=n))
             for m in ("native", "twin") for d in ("float32", "float64") for n in (10, 20)]
    assert run_report.plot(table, str(tmp_path / "p.png"), "t")
    lines = {line.get_label(): line for line in figures[0].axes[0].get_lines()}
    for method in ("native", "twin"):
        a, b = lines[f"{method} float32"], lines[f"{method} float64"]
        assert a.get_color() == b.get_color()                    # one colour per method
        assert a.get_marker() != b.get_marker()
        assert a.get_linestyle() != b.get_linestyle()


def test_a_failed_run_leaves_no_empty_folder(tmp_path, capsys):
    """Issue 24, item 19: a bench run that measured nothing left an empty results folder."""
    out = tmp_path / "bench"
    assert runner.main(["--quick", "-k", "no_such_benchmark_here", "--out", str(out)]) == 5
    assert not out.exists()
    assert "nothing was measured (pytest status 5); removed the empty folder" in \
        capsys.readouterr().out
