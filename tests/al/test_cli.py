"""The `fishermask` command end to end on tiny settings, and the report's numbers."""
import csv
import json
import os
import subprocess
import sys

import pytest
import torch
from testing import tiny_run

from fishermask_ext import select_batch
from fishermask_ext.al import cli, report
from fishermask_ext.testing import tol

TINY = tiny_run(strategies="random,entropy,bait", rounds=2, seeds="0,1", epochs=3,
                pool_size=120, test_size=60)


def test_run_writes_curves_plot_and_summary(tmp_path, capsys):
    out = str(tmp_path / "exp")
    assert cli.main(["run", *TINY, "--out", out]) == 0
    printed = capsys.readouterr().out
    assert "| bait |" in printed and "acc@15" in printed
    for name in ("curves.csv", "curves.json", "curves.png", "summary.md", "config.json"):
        assert os.path.getsize(os.path.join(out, name)) > 0
    with open(os.path.join(out, "curves.csv")) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * 2 * 3                     # strategies x seeds x (rounds + 1)
    assert {r["n_labeled"] for r in rows} == {"10", "15", "20"}
    curves = json.load(open(os.path.join(out, "curves.json")))["curves"]
    assert list(curves) == ["random", "entropy", "bait"]
    assert cli.main(["run", *TINY, "--out", out]) == 2          # refuses to overwrite
    assert "pass resume=True (--resume)" in capsys.readouterr().err
    assert cli.main(["run", *TINY, "--out", out, "--resume"]) == 0
    os.remove(os.path.join(out, "summary.md"))
    assert cli.main(["report", out]) == 0 and os.path.isfile(os.path.join(out, "summary.md"))
    assert cli.main(["report", str(tmp_path)]) == 2
    assert "config.json" in capsys.readouterr().err


def test_run_default_folder_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = tiny_run("--imbalance", "0:30,1:30,2:30", pool_size=90,   # all 90 there are
                    test_size=60, epochs=3)
    assert cli.main(["run", *args]) == 0
    assert os.path.isfile(tmp_path / "results" / "digits-mlp-imbalanced" / "summary.md")


def test_run_reports_bad_names(capsys, tmp_path):
    assert cli.main(["run", "--strategies", "entropy,bald", "--out", str(tmp_path)]) == 2
    assert "strategy must be one of 'badge'" in capsys.readouterr().err
    assert cli.main(["run", "--set", "entropy.lamb=1", "--out", str(tmp_path)]) == 2
    assert "has no option lamb" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", [".txt", ".pt"])
def test_select_from_saved_embeddings(tmp_path, suffix):
    torch.manual_seed(0)
    emb = {"unlabeled": torch.randn(40, 3, 6), "labeled": torch.randn(5, 3, 6)}
    torch.save(emb, tmp_path / "emb.pt")
    out = str(tmp_path / f"picks{suffix}")
    assert cli.main(["select", str(tmp_path / "emb.pt"), "--budget", "4", "--out", out,
                     "--lamb", "0.5"]) == 0
    want = select_batch(emb["unlabeled"], 4, labeled=emb["labeled"], lamb=0.5).tolist()
    got = torch.load(out).tolist() if suffix == ".pt" else \
        [int(v) for v in open(out).read().split()]
    assert got == want


def test_python_dash_m_entry_point():
    res = subprocess.run([sys.executable, "-m", "fishermask_ext", "run", "--help"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "--resume" in res.stdout


def test_aggregate_mean_std_and_aulc():
    rows = [dict(strategy="a", seed=s, round=r, n_labeled=10 + 10 * r, accuracy=acc,
                 train_accuracy=1.0, train_s=1.0, select_s=0.5 if r < 2 else None)
            for s, accs in ((0, (0.5, 0.7, 0.9)), (1, (0.5, 0.5, 0.7))) for r, acc in
            enumerate(accs)]
    c = report.aggregate(rows)["a"]
    assert c["n_labeled"] == [10, 20, 30] and c["n_seeds"] == [2, 2, 2]
    # seed 0: (0.6 + 0.8) / 2 = 0.7; seed 1: (0.5 + 0.6) / 2 = 0.55
    got = torch.tensor([*c["mean"], *c["std"], c["aulc"], c["aulc_std"]], dtype=torch.float64)
    want = torch.tensor([0.5, 0.6, 0.8, 0, .1, .1, 0.625, 0.075], dtype=torch.float64)
    torch.testing.assert_close(got, want, **tol(torch.float64, terms=6))   # means of means, a sqrt
    assert c["select_s"] == 0.5
