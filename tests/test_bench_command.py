"""`fishermask bench --shape N,C,D --budget K` (issue 23): selection timed from the installed
package alone, native against the twin on the same rows, rates against peaks of the same run;
and the counts those rates come from."""
import json
import subprocess
import sys

import pytest
import torch

from fishermask_ext import bench
from fishermask_ext.al import cli
from fishermask_ext.ops import native_available
from fishermask_ext.select.counts import selection_counts, step_counts
from fishermask_ext.testing import subprocess_env

needs_native = pytest.mark.skipif(not native_available("cpu"), reason="no native CPU build")
SMALL_RATES = (1 << 20, 64)      # (bytes copied, GEMM side): the figures only exercise the code


@pytest.fixture
def small_rates(monkeypatch):
    rates = bench.device_rates
    monkeypatch.setattr(bench, "device_rates", lambda device: rates(device, SMALL_RATES))


@needs_native
def test_bench_runs_outside_the_checkout_and_prints_its_table(tmp_path):
    """The issue's check, small: `python -m fishermask_ext bench` from a folder that is not the
    checkout (the package found through PYTHONPATH only)."""
    out = tmp_path / "b.json"
    res = subprocess.run([sys.executable, "-m", "fishermask_ext", "bench", "--shape", "200,3,20",
                          "--budget", "2", "--json", str(out)], cwd=tmp_path, env=subprocess_env(),
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("engine"))
    for col in ("time s", "steps/s", "GB/s", "% copy", "GFLOP/s", "% DGEMM", "twin / native"):
        assert col in lines[header]
    assert [line.split()[0] for line in lines[header + 1:header + 3]] == ["native", "twin"]
    assert "picks: native and twin pick the same 2 points, in order" in res.stdout
    doc = json.loads(out.read_text())
    assert doc["shape"] == dict(N=200, C=3, D=20) and doc["budget"] == 2 and doc["picks_agree"]
    assert doc["rates"]["copy_GBs"] > 0 and doc["rates"]["dgemm_GFLOPs"] > 0
    assert [r["engine"] for r in doc["runs"]] == ["native", "twin"]
    work = selection_counts(200, 3, 20, 2, 4, round_trip=False)
    assert doc["runs"][0]["flops"] == work["flops"] and doc["runs"][0]["bytes"] == work["bytes"]


@needs_native
def test_factored_with_the_twin_on_fewer_rows(small_rates, capsys):
    """The twin on the first 100 rows: native runs there too, so the ratio compares like with
    like; the whole pool's native row has no ratio."""
    assert cli.main(["bench", "--shape", "300,4,30", "--budget", "3", "--factored", "--d-bar",
                     "5", "--twin-rows", "100", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "factored (d̄ = 5, D_r = 10) pool N = 300, C = 4, D = 30" in out
    rows = [line.split() for line in out.splitlines() if line.startswith(("native", "twin"))]
    assert [(r[0], r[1]) for r in rows] == [("native", "300"), ("native", "100"), ("twin", "100")]
    assert rows[0][-1] == "-" and rows[1][-1].endswith("x") and rows[2][-1] == "1.00x"


def test_no_twin(small_rates, capsys):
    assert cli.main(["bench", "--shape", "50,3,8", "--budget", "2", "--twin-rows", "0"]) == 0
    out = capsys.readouterr().out
    assert "twin  " not in out and "picks: not compared" in out


@pytest.mark.parametrize("argv, message", [
    (["--shape", "20000,10"], "--shape must be three integers > 0, N,C,D"),
    (["--shape", "a,b,c"], "--shape must be three integers > 0"),
    (["--shape", "0,3,4"], "--shape must be three integers > 0"),
    (["--shape", "5,3,4", "--budget", "6"], "budget must be between 1 and the 5 pool rows"),
    (["--d-bar", "2"], "--d-bar is a factored pool's: add --factored"),
    (["--factored", "--d-bar", "3"], "--d-bar must be between 1 and D // C = 2"),
    (["--twin-rows", "1"], "--twin-rows must be 0 (no twin) or between the budget 2 and N = 40"),
    (["--repeats", "0"], "--repeats must be an int >= 1, got 0"),
    (["--device", "gpu"], "--device 'gpu' is not a device name"),
    (["--json", "/no/such/folder/b.json"], "--json /no/such/folder/b.json: its folder"),
], ids=["two-numbers", "letters", "zero", "budget", "d-bar-dense", "d-bar-big", "twin-rows",
        "repeats", "device", "json"])
def test_bad_input_is_one_line_and_status_2(argv, message, capsys):
    """Nothing runs: each error comes before the pool is made (a later flag overrides)."""
    assert cli.main(["bench", "--shape", "40,3,8", "--budget", "2", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fishermask bench: error: ") and message in err, err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
def test_cuda_without_cuda_says_so(capsys):
    assert cli.main(["bench", "--shape", "40,3,8", "--budget", "2", "--device", "cuda"]) == 2
    assert "--device 'cuda': no CUDA device is usable here" in capsys.readouterr().err


def test_every_flag_has_help():
    _, commands = cli._parser()
    for action in commands["bench"]._actions:
        assert action.help, action.dest
        if action.choices or action.default not in (None, False):
            assert "default" in action.help or action.dest == "help", action.dest


def test_step_counts_are_the_documented_ones():
    """docs/SCALING.md, "The CUDA step": N = 50,000, C = 10, D = 1,402, float32: 3.12 GB and
    28.6 GFLOP per step; the CPU's fused step moves no products."""
    nbytes, flops = step_counts(50_000, 10, 1402, 4, round_trip=True)
    assert round(nbytes / 1e9, 2) == 3.12 and round(flops / 1e9, 1) == 28.6
    fused, _ = step_counts(50_000, 10, 1402, 4, round_trip=False)
    assert nbytes - fused == 2 * 50_000 * 10 * 20 * 8      # WZ [N, C, 2C] f64 written, read


def test_factored_counts_meet_dense_ones_at_one_class():
    """With C = 1 a factored row is h̄ beside R: the sandwich work equals the dense one."""
    dense = selection_counts(100, 1, 30, 1, 8, round_trip=False)
    factored = selection_counts(100, 1, 30, 1, 8, round_trip=False, factors=(20, 10))
    assert factored["flops"] == pytest.approx(dense["flops"], rel=0.02)
    assert selection_counts(100, 3, 30, 5, 4, round_trip=False)["steps"] == 5
