"""Bad input to `fishermask run`, `report` and `select`, each as a user fed it: one line naming
the input and the fix, status 2, and nothing written or lost."""
import json
import os

import numpy as np
import pytest
import torch
from testing import cli_fails, tiny_run

from fishermask_ext import select_batch
from fishermask_ext.al import cli, preflight
from fishermask_ext.al import loop as loop_mod

TINY = tiny_run(strategies="random,entropy", epochs=2)


_fails = cli_fails


# Item 1: a failed start leaves nothing that blocks the corrected retry.
@pytest.mark.parametrize("bad, needles", [
    (["--model", "resnet50"], ["model (--model) must be one of 'mlp'", "got 'resnet50'"]),
    (["--device", "cuda"], ["device (--device) 'cuda'", "use cpu"]),
], ids=["model", "device"])
def test_failed_start_writes_nothing_and_retry_runs(tmp_path, capsys, bad, needles):
    if bad[1] == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA: --device cuda is valid here")
    out = tmp_path / "exp"
    _fails(capsys, ["run", *TINY, *bad, "--out", str(out)], *needles)
    assert not out.exists()
    assert cli.main(["run", *TINY, "--out", str(out)]) == 0


def test_folder_without_completed_round_is_replaced(tmp_path):
    out = tmp_path / "exp"
    (out / "runs" / "random-seed0").mkdir(parents=True)      # what an old failed start left
    (out / "config.json").write_text(json.dumps({"model": "resnet50"}))
    assert cli.main(["run", *TINY, "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["model"] == "mlp"


def test_model_that_does_not_fit_the_data_fails_before_writing(tmp_path, capsys):
    out = tmp_path / "exp"
    _fails(capsys, ["run", *TINY, "--model-option", "in_features=10", "--out", str(out)],
           "does not run on inputs of shape (1, 8, 8)", "--model-option")
    _fails(capsys, ["run", *TINY, "--model-option", "widht=3", "--out", str(out)],
           "model 'mlp' has no option widht")
    assert not out.exists()


# Item 2: raw tracebacks become one line naming the input and the fix.
def test_device_gpu_is_not_a_device_name(tmp_path, capsys):
    _fails(capsys, ["run", *TINY, "--device", "gpu", "--out", str(tmp_path / "x")],
           "'gpu' is not a device name", "cuda")


def test_torchvision_dataset_without_torchvision(tmp_path, capsys):
    try:
        import torchvision  # noqa: F401
        pytest.skip("torchvision imports here")
    except Exception:
        pass
    _fails(capsys, ["run", *TINY, "--dataset", "torchvision:MNIST", "--out",
                    str(tmp_path / "x")], "needs torchvision", "digits")
    assert not (tmp_path / "x").exists()


def test_select_reads_npy(tmp_path):
    """Item 2 and 5: `fishermask select emb.npy` was an UnpicklingError."""
    X = np.random.default_rng(0).standard_normal((30, 3, 5)).astype(np.float32)
    np.save(tmp_path / "emb.npy", X)
    out = tmp_path / "picks.txt"
    assert cli.main(["select", str(tmp_path / "emb.npy"), "--budget", "4", "--out", str(out),
                     "--no-progress"]) == 0
    assert [int(v) for v in out.read_text().split()] == select_batch(X, 4).tolist()


def test_select_names_an_unreadable_file(tmp_path, capsys):
    (tmp_path / "emb.pt").write_text("not a tensor")
    _fails(capsys, ["select", str(tmp_path / "emb.pt"), "--budget", "2", "--out",
                    str(tmp_path / "p.txt")], "emb.pt is neither a .npy file nor a torch.save",
           ".npy file (numpy.save)")
    _fails(capsys, ["select", str(tmp_path / "none.npy"), "--budget", "2", "--out",
                    str(tmp_path / "p.txt")], "none.npy: cannot read it")
    assert not (tmp_path / "p.txt").exists()


def _finished(tmp_path, seeds="0"):
    out = tmp_path / "exp"
    args = list(TINY)
    args[args.index("--seeds") + 1] = seeds
    assert cli.main(["run", *args, "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("name", ["config.json", "state.json"])
def test_truncated_json_names_the_file(tmp_path, capsys, name):
    out = _finished(tmp_path)
    path = out / "config.json" if name == "config.json" else \
        out / "runs" / "random-seed0" / "state.json"
    path.write_text(path.read_text()[:40])           # cut off mid-string
    kept = {p: p.read_bytes() for p in out.rglob("*.json")}
    _fails(capsys, ["run", *TINY, "--out", str(out), "--resume"], str(path),
           "is not valid JSON", "cut off")
    assert {p: p.read_bytes() for p in out.rglob("*.json")} == kept       # nothing lost


def test_report_skips_a_broken_run_and_names_it(tmp_path, capsys):
    out = _finished(tmp_path)
    broken = out / "runs" / "entropy-seed0" / "state.json"
    broken.write_text('{"strategy": "entro')
    capsys.readouterr()
    assert cli.main(["report", str(out)]) == 0
    captured = capsys.readouterr()
    assert f"skipped {broken}: {broken} is not valid JSON" in captured.err
    assert "| random |" in captured.out and "| entropy |" not in captured.out
    assert "Skipped, unreadable" in (out / "summary.md").read_text()


# Item 3: options that were silently ignored or failed late.
def test_options_for_a_strategy_not_in_the_run(tmp_path, capsys):
    _fails(capsys, ["run", *TINY, "--set", "foo.pct_top=0.1", "--out", str(tmp_path / "x")],
           "'foo' (--set)", "its strategies: random, entropy")


def test_option_types_are_checked_at_once(tmp_path, capsys, monkeypatch):
    called = []
    monkeypatch.setattr(loop_mod.datasets, "load", lambda *a, **k: called.append(1))
    _fails(capsys, ["run", *TINY, "--strategies", "fishermask", "--set",
                    "fishermask.pct_top=abc", "--out", str(tmp_path / "x")],
           "strategy 'fishermask' (--set fishermask.KEY=VALUE): pct_top must be a number")
    assert not called                                 # before any data is loaded


@pytest.mark.parametrize("flag", ["--query", "--initial"])
def test_zero_query_or_initial_names_the_flag(tmp_path, capsys, flag):
    err = _fails(capsys, ["run", *TINY, flag, "0", "--out", str(tmp_path / "x")],
                 f"{flag} must be an int >= 1, got 0")
    assert "pool" not in err


def test_repeated_seeds_are_refused(tmp_path, capsys):
    _fails(capsys, ["run", *TINY, "--seeds", "0,0", "--out", str(tmp_path / "x")],
           "--seeds lists 0 more than once")


def test_bad_select_out_fails_before_selecting(tmp_path, capsys, monkeypatch):
    torch.save(torch.randn(20, 2, 3), tmp_path / "emb.pt")
    monkeypatch.setattr("fishermask_ext.select.select_batch",
                        lambda *a, **k: pytest.fail("selection ran"))
    _fails(capsys, ["select", str(tmp_path / "emb.pt"), "--budget", "2", "--out",
                    str(tmp_path / "no" / "such" / "p.txt")], "does not exist")
    _fails(capsys, ["select", str(tmp_path / "emb.pt"), "--budget", "2", "--out",
                    str(tmp_path)], "is a folder")
