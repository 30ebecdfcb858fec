"""`fishermask bench` (issue 13, item 6): --quick at smoke sizes, --list, the time estimate,
--help, the table and plot it writes, and SIGTERM / Ctrl-C stopping its pytest child."""
import json
import os
import resource
import signal
import subprocess
import sys
import time

import pytest

from fishermask_ext.al import bench, bench_report, cli
from fishermask_ext.testing import subprocess_env

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
QUICK_CPU_S = 60     # the "under a minute", as CPU seconds of one thread (see below)


def _cli(*args, **kw):
    env = {k: v for k, v in subprocess_env().items() if k != "OMP_NUM_THREADS"}
    return subprocess.Popen([sys.executable, "-m", "fishermask_ext.al.cli", *args], cwd=ROOT,
                            env=env, text=True, **kw)


def test_quick_runs_every_benchmark_and_writes_table_and_plot(tmp_path):
    """The CI check of `fishermask bench --quick`: every benchmark passes at its smoke sizes,
    the table has a row for each one collected, the plot exists. The time limit is checked as
    CPU time of the whole process tree with one thread per process: on this shared machine wall
    time depends on the other jobs, CPU time does not (one idle core: wall <= CPU time). bench
    --quick itself runs one thread per process when OMP_NUM_THREADS is not set (it is unset
    here)."""
    out = tmp_path / "bench"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = _cli("bench", "--quick", "--out", str(out), stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT)
    printed, _ = proc.communicate(timeout=600)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert proc.returncode == 0, printed[-3000:]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert cpu < QUICK_CPU_S, f"bench --quick used {cpu:.1f} CPU s"
    table = json.loads((out / "results.json").read_text())
    selected, _ = bench.collect()
    ran = [d for d in selected if d[3] is None]                # not skipped on this machine
    assert sorted(r["name"] for r in table["benchmarks"]) == sorted(
        d[0].split("::")[-1] for d in ran)
    assert table["quick"] is True and all(r["min_s"] > 0 for r in table["benchmarks"])
    md = (out / "results.md").read_text()
    assert "smoke sizes" in md and "| test_select_pool_size[native-N/4] |" in md
    png = (out / "select-time.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    points = bench_report.series(bench_report.rows(
        json.loads((out / "pytest-benchmark.json").read_text())))
    assert {m for m, d in points} == {"native", "twin", "direct"}
    assert [n for n, _, _ in points[("native", "float32")]] == [10, 20, 40]


def test_list_shows_every_benchmark_and_the_estimate(capsys):
    assert cli.main(["bench", "--list"]) == 0
    printed = capsys.readouterr().out
    selected, _ = bench.collect()
    for nodeid, *_ in selected:
        assert nodeid.split("::", 1)[1] in printed
    assert "bench_select.py (about 68 min at full size)" in printed
    assert "a full run of these takes about" in printed


def test_default_run_says_how_long(monkeypatch, tmp_path, capsys):
    """-k pool_size keeps 6 of bench_select's 15 benchmarks: the estimate is prorated."""
    calls = []
    monkeypatch.setattr(bench, "run_child", lambda cmd, cwd, env=None: calls.append(cmd) or 0)
    assert cli.main(["bench", "-k", "pool_size", "--out", str(tmp_path / "b")]) == 0
    printed = capsys.readouterr().out
    minutes = bench.file_minutes()["bench_select.py"]
    assert f"about {minutes * 6 / 15:.0f} min" in printed
    cmd = calls[0]
    assert cmd[:3] == [sys.executable, "-m", "pytest"] and cmd[3].endswith("benchmarks")
    assert "--benchmark-only" in cmd and cmd[-2:] == ["-k", "pool_size"]
    assert "--smoke-sizes" not in cmd
    assert any(c.startswith("--benchmark-json=" + str(tmp_path / "b")) for c in cmd)


def test_out_folder_is_checked_first(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench, "run_child", lambda cmd, cwd, env=None: pytest.fail("must not run"))
    (tmp_path / "old").mkdir()
    assert cli.main(["bench", "--quick", "--out", str(tmp_path / "old")]) == 2
    assert "already exists; bench never overwrites" in capsys.readouterr().err


def test_help_documents_the_pytest_pass_through():
    res = subprocess.run([sys.executable, "-m", "fishermask_ext.al.cli", "bench", "--help"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env=subprocess_env())
    assert res.returncode == 0
    assert "goes to pytest unchanged" in res.stdout and "-k select" in res.stdout
    assert "--quick" in res.stdout and "--list" in res.stdout and "PYTEST ARGS" in res.stdout


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_signal_stops_the_pytest_child(tmp_path, sig):
    """Start `fishermask bench`, signal it once its pytest child runs: the child (and its
    process group) must be gone within a bound. Only pids this test started are signalled."""
    proc = _cli("bench", "--quick", "-k", "pool_size", "--out", str(tmp_path / "b"),
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    child = None
    try:
        for line in proc.stderr:        # "[bench] pytest running as pid N"
            if "pytest running as pid" in line:
                child = int(line.split()[-1])
                break
        assert child is not None and _alive(child)
        time.sleep(1.0)                 # pytest is importing / running now
        proc.send_signal(sig)
        code = proc.wait(timeout=60)
        assert code == 128 + sig, proc.stderr.read()[-2000:]
        deadline = time.monotonic() + 30
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(child), f"pytest child {child} survived its parent"
        # nothing of its process group runs either (zombies, left for init to reap, hold nothing)
        while bench.group_running(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not bench.group_running(child), f"process group {child} survived its parent"
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
    paths = bench_report.write(str(path), str(tmp_path), command=["fishermask", "bench"])
    assert set(paths) == {"markdown", "json", "plot"}
    md = (tmp_path / "results.md").read_text()
    assert "| g | t[native-20] | 0.02 | 0.02 | 0.02 | 3 | C=3, D=5, K=2, note=1.5 |" in md
    assert "| other |" in md
    series = bench_report.series(bench_report.rows(raw))
    assert [p[:2] for p in series[("twin", "float32")]] == [(10, 0.03), (20, 0.06)]
    raw["benchmarks"] = raw["benchmarks"][-1:]              # no selection points: no plot
    path.write_text(json.dumps(raw))
    os.remove(paths["plot"])
    assert "plot" not in bench_report.write(str(path), str(tmp_path))
    assert not os.path.exists(paths["plot"])


def test_group_running_sees_a_group_until_it_ends():
    """group_running is what run_child waits on: true while a process of the group runs, false
    once the group's only process is killed and reaped."""
    proc = subprocess.Popen(["sleep", "60"], process_group=0)
    try:
        assert bench.group_running(proc.pid)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)     # the group this test created
        proc.wait()
    assert not bench.group_running(proc.pid)
