"""Flags checked before anything is written: inputs the CLI once accepted in silence or answered
with a library's raw message fail with one line naming the flag and the fix, status 2."""
import os

import numpy as np
import pytest
import torch
from testing import cli_fails, tiny_run

from fishermask_ext.al import cli, embed_cmd
from fishermask_ext.nn import ParamMask, get_model

TINY = tiny_run()
POOL = ["--dataset", "digits", "--pool-size", "150", "--no-progress"]


_fails = cli_fails


def _usage_error(capsys, argv, *needles):
    """argparse's own refusal: status 2 and its message on stderr."""
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    for needle in needles:
        assert needle in err, err


@pytest.mark.parametrize("bad, needle", [
    # Item 1: ran to the end with untrained models (flat accuracy 0.114), status 0.
    (["--epochs", "0"], "--epochs must be an int >= 1, got 0"),
    # Item 2: a training-accuracy target that can never be reached.
    (["--train-accuracy", "2"], "--train-accuracy must be a fraction in [0, 1], got 2.0"),
    # Item 3: config.json recorded 100000 for a pool of 1,347.
    (["--pool-size", "100000"], "pool_size (--pool-size) is 100000, but there are only 1,347 "
                                "training images of digits"),
    # Item 12: config.json written first, then "no completed round".
    (["--strategies", ""], "--strategies is empty; give at least one"),
    # Item 12: torch's "Invalid learning rate: nan", without the flag.
    (["--lr", "nan"], "--lr must be a finite number, got nan"),
    # Item 10: torch's "empty(): argument 'size' ...".
    (["--model-option", "hidden=abc"], "model 'mlp': --model-option hidden=\"abc\" must be a "
                                       "list of ints like its default, e.g. hidden=[64]"),
], ids=["epochs-0", "train-accuracy-2", "pool-size", "no-strategies", "lr-nan", "model-option"])
def test_bad_run_flags_fail_before_writing(tmp_path, capsys, bad, needle):
    out = tmp_path / "exp"
    _fails(capsys, ["run", *TINY, *bad, "--out", str(out)], needle)
    assert not out.exists()


def test_a_model_option_torch_refuses_names_the_flag(tmp_path, capsys):
    _fails(capsys, ["run", *TINY, "--model-option", "hidden=[-1]", "--out", str(tmp_path / "x")],
           "model 'mlp' cannot be built with options {'hidden': [-1]}", "fix --model-option")


def test_seeds_that_are_not_integers_say_so(capsys):
    """Item 12: argparse said `invalid <lambda> value`."""
    _usage_error(capsys, ["run", "--seeds", "a,b"],
                 "argument --seeds: expected a comma list of integers such as 0,1,2, got 'a,b'")


def test_a_misspelled_flag_gets_the_closest_one(capsys):
    """Item 12: no suggestion (argparse offers one itself only from Python 3.14)."""
    _usage_error(capsys, ["run", "--epocs", "3"],
                 "unrecognized arguments: --epocs (did you mean --epochs?) 3")
    _usage_error(capsys, ["select", "x.npy", "--budget", "2", "--out", "p.txt", "--lambda=1"],
                 "--lambda=1 (did you mean --lamb?)")


def test_report_on_a_folder_that_is_no_results_folder(tmp_path, capsys):
    """Item 12: `[Errno 2] ... config.json`."""
    _fails(capsys, ["report", str(tmp_path)], f"{tmp_path} has no config.json: it is not a "
                                              f"results folder")
    _fails(capsys, ["report", str(tmp_path / "nowhere")], "is not a folder")


def test_out_that_is_an_existing_file(tmp_path, capsys):
    """Item 12: `[Errno 17] File exists`."""
    (tmp_path / "taken").write_text("mine")
    _fails(capsys, ["run", *TINY, "--out", str(tmp_path / "taken")],
           f"the results folder {tmp_path / 'taken'} (--out) is an existing file")
    assert (tmp_path / "taken").read_text() == "mine"


@pytest.fixture
def ckpt(tmp_path):
    torch.manual_seed(0)
    model = get_model("mlp", in_features=64, num_classes=10, hidden=[8])
    path = str(tmp_path / "model.pt")
    embed_cmd.save_checkpoint(path, model, "mlp", 10, {"hidden": [8]})
    return path, model


def test_embed_resume_refuses_mask_flags_that_contradict_the_store(tmp_path, ckpt, capsys):
    """Item 5: `--resume --mask bait` (or --pct-top 0.5) kept the store's own mask silently."""
    path, model = ckpt
    out = str(tmp_path / "pool.store")
    assert cli.main(["embed", path, *POOL, "--out", out]) == 0          # fishermask's mask
    kept = {f: open(os.path.join(out, f), "rb").read() for f in sorted(os.listdir(out))}
    for flags, said in ((["--mask", "bait"], "--mask bait (the store: fishermask)"),
                        (["--pct-top", "0.5"], "--pct-top 0.5 (the store: the default)"),
                        (["--seed", "3"], "--seed 3 (the store: 0)")):
        _fails(capsys, ["embed", path, *POOL, "--out", out, "--resume", *flags],
               "refuse to mix", said, "Resume without those flags")
    assert {f: open(os.path.join(out, f), "rb").read() for f in sorted(os.listdir(out))} == kept
    # The flags it was started with, or none, resume as before.
    assert cli.main(["embed", path, *POOL, "--out", out, "--resume", "--mask", "fishermask",
                     "--seed", "0"]) == 0
    assert "0 of 1 chunks computed now" in capsys.readouterr().out


def test_embed_resume_refuses_another_mask_file(tmp_path, ckpt, capsys):
    path, model = ckpt
    ParamMask(model, {"linear.weight": torch.arange(5)}).save(tmp_path / "a.pt")
    ParamMask(model, {"linear.weight": torch.arange(6)}).save(tmp_path / "b.pt")
    out = str(tmp_path / "pool.store")
    assert cli.main(["embed", path, *POOL, "--out", out, "--mask", str(tmp_path / "a.pt")]) == 0
    _fails(capsys, ["embed", path, *POOL, "--out", out, "--resume", "--mask",
                    str(tmp_path / "b.pt")], "another mask than the store's mask.pt")
    assert cli.main(["embed", path, *POOL, "--out", out, "--resume", "--mask",
                     str(tmp_path / "a.pt")]) == 0


def test_embed_names_a_file_that_is_no_checkpoint(tmp_path, capsys):
    """Item 9: `fishermask embed garbage.npy` ended in `KeyError: 101` from the unpickler."""
    np.save(tmp_path / "garbage.npy", np.zeros((3, 4)))
    _fails(capsys, ["embed", str(tmp_path / "garbage.npy"), *POOL, "--out",
                    str(tmp_path / "s")], "garbage.npy is a numpy array (.npy), not a model "
                                          "checkpoint", "fishermask select")
    (tmp_path / "junk.pt").write_bytes(b"\x00junk" * 10)
    _fails(capsys, ["embed", str(tmp_path / "junk.pt"), *POOL, "--out", str(tmp_path / "s")],
           "junk.pt is not a model checkpoint torch can load", "torch.save")
    assert not (tmp_path / "s" / "embeddings.bin").exists()
