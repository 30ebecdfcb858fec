"""`fishermask embed --factored` and `fishermask select` on factored pools (a factored store, a
torch.save'd FactoredEmbeddings): the same rows and picks as the dense pipeline; a store of one
kind is never resumed as the other."""
import json
import os

import torch

from fishermask_ext import (FactoredEmbeddings, masked_grad_embeddings, open_store,
                            select_batch, select_from_pool)
from fishermask_ext.al import cli
from fishermask_ext.nn import ParamMask

POOL = ["--dataset", "digits", "--pool-size", "150", "--no-progress"]


def test_embed_factored_then_select(tmp_path, saved, capsys):
    ckpt, model, pool = saved
    out = str(tmp_path / "f.store")
    assert cli.main(["embed", ckpt, *POOL, "--out", out, "--chunk-rows", "40", "--factored"]) == 0
    assert "factored (d̄ = 9, D_r = " in capsys.readouterr().out   # hidden 8 + the bias's 1
    mask = ParamMask.load(os.path.join(out, "mask.pt"), model)
    dense = masked_grad_embeddings(model, pool, mask)
    rows = open_store(out).read_rows(0, 150)
    assert isinstance(rows, FactoredEmbeddings) and torch.equal(rows.dense(), dense)
    (tmp_path / "labeled.txt").write_text("3\n17\n90\n149\n")
    picks = str(tmp_path / "picks.txt")
    assert cli.main(["select", out, "--budget", "6", "--labeled", str(tmp_path / "labeled.txt"),
                     "--out", picks, "--backward-steps", "1", "--no-progress"]) == 0
    labeled = torch.zeros(150, dtype=torch.bool)
    labeled[[3, 17, 90, 149]] = True
    want = select_from_pool(dense, 6, labeled, backward_steps=1).tolist()
    assert [int(v) for v in open(picks).read().split()] == want


def test_resume_factored_and_refuse_to_mix(tmp_path, saved, capsys):
    ckpt, _, _ = saved
    dense, fac = str(tmp_path / "d.store"), str(tmp_path / "f.store")
    assert cli.main(["embed", ckpt, *POOL, "--out", dense, "--chunk-rows", "40"]) == 0
    assert cli.main(["embed", ckpt, *POOL, "--out", fac, "--chunk-rows", "40", "--factored"]) == 0
    whole = {n: open(os.path.join(fac, n), "rb").read() for n in os.listdir(fac)
             if n.endswith(".bin")}
    capsys.readouterr()
    for store, flags, have in ((dense, ["--factored"], "dense"), (fac, [], "factored")):
        assert cli.main(["embed", ckpt, *POOL, "--out", store, "--resume", *flags]) == 2
        assert f"refuse to mix: the store at {store} holds {have} embeddings" in \
            capsys.readouterr().err
    # A crash after chunk 1 of the factored store: --resume --factored redoes chunks 2 and 3.
    manifest = os.path.join(fac, "manifest.json")
    json.dump({**json.load(open(manifest)), "completed": [0, 1]}, open(manifest, "w"))
    assert cli.main(["embed", ckpt, *POOL, "--out", fac, "--resume", "--factored"]) == 0
    assert "2 of 4 chunks computed now" in capsys.readouterr().out
    assert {n: open(os.path.join(fac, n), "rb").read() for n in whole} == whole


def test_select_reads_saved_factored_embeddings(tmp_path, saved, capsys):
    _, model, pool = saved
    mask = ParamMask(model, {"linear.weight": torch.arange(80), "linear.bias": torch.arange(10)})
    fac = masked_grad_embeddings(model, pool[:40], mask, factored=True)
    torch.save(fac, tmp_path / "f.pt")
    torch.save({"unlabeled": fac[5:], "labeled": fac[:5]}, tmp_path / "split.pt")
    want = [select_batch(fac.dense(), 4).tolist(),
            select_batch(fac.dense()[5:], 4, labeled=fac.dense()[:5]).tolist()]
    for i, name in enumerate(("f.pt", "split.pt")):
        out = str(tmp_path / f"p{i}.txt")
        assert cli.main(["select", str(tmp_path / name), "--budget", "4", "--out", out,
                         "--no-progress"]) == 0
        assert [int(v) for v in open(out).read().split()] == want[i]
    # A file whose factors do not fit together is refused by the constructor's checks.
    bad = FactoredEmbeddings(fac.G, fac.H)
    bad.H = fac.H[:3]
    torch.save(bad, tmp_path / "bad.pt")
    assert cli.main(["select", str(tmp_path / "bad.pt"), "--budget", "2", "--out",
                     str(tmp_path / "p.txt")]) == 2
    assert "H must be [N, d̄] = [40, d̄]" in capsys.readouterr().err
