"""`fishermask embed` (checkpoint + data set -> store, --resume) and `fishermask select` on a
store, end to end on the digits pool with a tiny MLP."""
import json
import os

import torch

from fishermask_ext import masked_grad_embeddings, open_store, select_from_pool
from fishermask_ext import strategies
from fishermask_ext.al import cli, embed_cmd
from fishermask_ext.strategies.base import PoolView
from fishermask_ext.nn import ParamMask, get_model

POOL = ["--dataset", "digits", "--pool-size", "150", "--no-progress"]


def test_embed_then_select_equals_the_in_memory_pipeline(tmp_path, saved, capsys):
    ckpt, model, pool = saved
    out = str(tmp_path / "pool.store")
    assert cli.main(["embed", ckpt, *POOL, "--out", out, "--chunk-rows", "40"]) == 0
    assert "4 of 4 chunks computed now" in capsys.readouterr().out
    # The mask is FisherMask's on this pool, kept in the store, with FisherMask's row weight.
    fishermask = strategies.get("fishermask")
    want_mask = fishermask.mask(PoolView(model, pool, torch.zeros(150, dtype=torch.bool), 0,
                                         256, torch.device("cpu")))
    assert ParamMask.load(os.path.join(out, "mask.pt"), model) == want_mask
    assert fishermask.weighting == "sqrt_p"                # the default variant's
    in_ram = masked_grad_embeddings(model, pool, want_mask, weighting=fishermask.weighting)
    store = open_store(out)
    assert store.fingerprints["weighting"] == fishermask.weighting
    assert torch.equal(store.read_rows(0, 150), in_ram)

    labeled = [3, 17, 90, 149]
    (tmp_path / "labeled.txt").write_text("".join(f"{i}\n" for i in labeled))
    picks = str(tmp_path / "picks.txt")
    assert cli.main(["select", out, "--budget", "6", "--labeled", str(tmp_path / "labeled.txt"),
                     "--out", picks, "--lamb", "0.5", "--backward-steps", "1"]) == 0
    mask = torch.zeros(150, dtype=torch.bool)
    mask[labeled] = True
    want = select_from_pool(in_ram, 6, mask, lamb=0.5, backward_steps=1).tolist()
    assert [int(v) for v in open(picks).read().split()] == want
    torch.save(mask, tmp_path / "mask.pt")                       # an [N] bool mask works too
    assert cli.main(["select", os.path.join(out, "manifest.json"), "--budget", "6", "--labeled",
                     str(tmp_path / "mask.pt"), "--out", str(tmp_path / "p.pt"), "--lamb", "0.5",
                     "--backward-steps", "1"]) == 0
    assert torch.load(tmp_path / "p.pt").tolist() == want


def test_resume_computes_only_the_missing_chunks(tmp_path, saved, capsys):
    ckpt, _, _ = saved
    out = str(tmp_path / "pool.store")
    assert cli.main(["embed", ckpt, *POOL, "--out", out, "--chunk-rows", "40"]) == 0
    whole = open(os.path.join(out, "embeddings.bin"), "rb").read()
    assert cli.main(["embed", ckpt, *POOL, "--out", out]) == 2        # never overwrites
    assert "already holds an embedding store" in capsys.readouterr().err
    # A crash after chunk 1: the manifest lists chunks 0 and 1, chunks 2 and 3 hold garbage.
    manifest = os.path.join(out, "manifest.json")
    m = json.load(open(manifest))
    json.dump({**m, "completed": [0, 1]}, open(manifest, "w"))
    chunk2 = len(whole) // 150 * 80
    with open(os.path.join(out, "embeddings.bin"), "r+b") as f:
        f.seek(chunk2)
        f.write(b"\xff" * (len(whole) - chunk2))
    assert cli.main(["select", out, "--budget", "3", "--out", str(tmp_path / "p.txt")]) == 2
    assert "incomplete: chunk(s) 2-3 of 0-3 were never written" in capsys.readouterr().err
    assert cli.main(["embed", ckpt, *POOL, "--out", out, "--resume"]) == 0
    assert "2 of 4 chunks computed now" in capsys.readouterr().out
    assert open(os.path.join(out, "embeddings.bin"), "rb").read() == whole


def test_embed_refuses_to_mix_another_model(tmp_path, saved, capsys):
    ckpt, _, _ = saved
    out = str(tmp_path / "pool.store")
    assert cli.main(["embed", ckpt, *POOL, "--out", out, "--chunk-rows", "40"]) == 0
    torch.manual_seed(1)
    embed_cmd.save_checkpoint(tmp_path / "other.pt", get_model("mlp", in_features=64,
                                                               num_classes=10, hidden=[8]),
                              "mlp", 10, {"hidden": [8]})
    assert cli.main(["embed", str(tmp_path / "other.pt"), *POOL, "--out", out, "--resume"]) == 2
    assert "refuse to mix" in capsys.readouterr().err
    assert cli.main(["embed", ckpt, *POOL, "--out", out, "--resume", "--weighting",
                     "none"]) == 2
    assert "another weighting ('sqrt_p' there, 'none' here)" in capsys.readouterr().err


def test_bare_state_dict_and_bait_mask(tmp_path, saved, capsys):
    _, model, pool = saved
    bare = str(tmp_path / "model-round0.pt")                # as `fishermask run --keep-weights`
    torch.save(model.state_dict(), bare)
    out = str(tmp_path / "bait.store")
    assert cli.main(["embed", bare, *POOL, "--out", out, "--model", "mlp", "--model-option",
                     "hidden=[8]", "--mask", "bait"]) == 0
    bait = strategies.get("bait")
    mask = bait.mask(PoolView(model, pool, torch.zeros(150, dtype=torch.bool), 0, 256, "cpu"))
    store = open_store(out)
    assert store.fingerprints["weighting"] == "sqrt_p" and store.shape == (150, 10, 80)
    assert torch.equal(store.read_rows(0, 150),
                       masked_grad_embeddings(model, pool, mask, weighting="sqrt_p"))
    # A mask file is taken as it is.
    mask.save(tmp_path / "m.pt")
    assert cli.main(["embed", bare, *POOL, "--out", str(tmp_path / "f.store"), "--model", "mlp",
                     "--model-option", "hidden=[8]", "--mask", str(tmp_path / "m.pt")]) == 0
    assert open_store(tmp_path / "f.store").fingerprints["weighting"] == "none"
    capsys.readouterr()
    assert cli.main(["embed", bare, *POOL, "--out", str(tmp_path / "x.store"),
                     "--model", "mlp"]) == 2
    assert "does not fit model 'mlp' with 10 classes" in capsys.readouterr().err
    torch.save([1, 2], tmp_path / "junk.pt")
    assert cli.main(["embed", str(tmp_path / "junk.pt"), *POOL, "--out",
                     str(tmp_path / "y.store")]) == 2
    assert "neither a save_checkpoint file nor a state_dict" in capsys.readouterr().err


def test_select_labeled_file_errors(tmp_path, saved, capsys):
    ckpt, _, _ = saved
    out = str(tmp_path / "pool.store")
    assert cli.main(["embed", ckpt, *POOL, "--out", out]) == 0
    for content, message in [("3\n150\n", r"positions must be in 0..149"),
                             (torch.zeros(7, dtype=torch.bool), r"must have shape \(150,\)"),
                             (torch.zeros(3), "must hold integer pool positions")]:
        path = tmp_path / ("l.txt" if isinstance(content, str) else "l.pt")
        path.write_text(content) if isinstance(content, str) else torch.save(content, path)
        assert cli.main(["select", out, "--budget", "2", "--labeled", str(path), "--out",
                         str(tmp_path / "p.txt")]) == 2
        assert message.replace("\\", "") in capsys.readouterr().err
    torch.save(torch.randn(5, 2, 3), tmp_path / "e.pt")
    assert cli.main(["select", str(tmp_path / "e.pt"), "--budget", "2", "--labeled",
                     str(tmp_path / "l.pt"), "--out", str(tmp_path / "p.txt")]) == 2
    # --labeled with an embeddings file: positions, a mask or embeddings; 3 floats are none.
    assert "must hold integer pool positions, an [N] bool mask or labeled embeddings" in \
        capsys.readouterr().err
