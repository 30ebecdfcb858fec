"""The experiment loop: atomic per-round state, exact resume after a crash, folder guards."""
import json
import os

import pytest
import torch

from fishermask_ext import MLP
from fishermask_ext.al import loop
from fishermask_ext.al.io import write_atomic

TIMES = ("train_s", "eval_s", "select_s")


def _config(**kw):
    if "strategies" in kw and "fishermask" not in kw["strategies"]:
        kw.setdefault("strategy_options", {})   # options for a strategy not run are an error
    return loop.default_config(**{**dict(
        pool_size=150, test_size=80, model_options={"hidden": [8]},
        strategies=["random", "fishermask"], strategy_options={"fishermask": {"n_samples": 32}},
        initial=10, query=5, rounds=3, seeds=[0], epochs=4), **kw})


def _states(out):
    got = {}
    for run in sorted(os.listdir(os.path.join(out, "runs"))):
        with open(os.path.join(out, "runs", run, "state.json")) as f:
            state = json.load(f)
        for h in state["history"]:
            for k in TIMES:
                h.pop(k)
        got[run] = state
    return got


class Crash(Exception):
    pass


def _crash_in_round_2(spy_select, patch, cfg):
    def crashing(name, select, model, pool, labeled_mask, budget):
        picks = select(model, pool, labeled_mask, budget)   # crash after the work is done
        if name == "fishermask" and int(labeled_mask.sum()) == cfg["initial"] + 2 * cfg["query"]:
            raise Crash("killed in round 2")
        return picks
    spy_select(crashing, patch)


@pytest.mark.parametrize("reset_weights,keep_batchnorm", [(True, False), (False, False),
                                                          (True, True)])
def test_resume_after_crash_equals_uninterrupted_run(tmp_path, monkeypatch, spy_select,
                                                     reset_weights, keep_batchnorm):
    names = ["random", "fishermask"] if reset_weights and not keep_batchnorm else ["fishermask"]
    cfg = _config(reset_weights=reset_weights, keep_batchnorm=keep_batchnorm, strategies=names)
    loop.run_experiment(cfg, str(tmp_path / "whole"), progress=False)
    with monkeypatch.context() as m:
        _crash_in_round_2(spy_select, m, cfg)
        with pytest.raises(Crash):
            loop.run_experiment(cfg, str(tmp_path / "cut"), progress=False)
    run_dir = tmp_path / "cut" / "runs" / "fishermask-seed0"
    saved = json.loads((run_dir / "state.json").read_text())
    assert [h["round"] for h in saved["history"]] == [0, 1] and not saved["done"]
    assert len(saved["labeled"]) == cfg["initial"] + 2 * cfg["query"]
    checkpoint = not reset_weights or keep_batchnorm
    assert sorted(os.listdir(run_dir)) == (["model-round1.pt", "state.json"] if checkpoint
                                           else ["state.json"])
    loop.run_experiment(cfg, str(tmp_path / "cut"), resume=True, progress=False)
    whole, cut = _states(tmp_path / "whole"), _states(tmp_path / "cut")
    assert whole == cut
    run = whole["fishermask-seed0"]
    assert [h["n_labeled"] for h in run["history"]] == [10, 15, 20, 25] and run["done"]
    assert len(set(run["labeled"])) == 25


def test_folder_guards(tmp_path):
    out = str(tmp_path / "exp")
    cfg = _config(strategies=["random"], rounds=1)
    loop.run_experiment(cfg, out, progress=False)
    with pytest.raises(FileExistsError, match="already holds this experiment; pass resume=True"):
        loop.run_experiment(cfg, out, progress=False)
    with pytest.raises(FileExistsError, match=r"different experiment .*query=5 there, 6 here"):
        loop.run_experiment(_config(strategies=["random"], rounds=1, query=6), out, resume=True,
                            progress=False)
    before = _states(out)
    loop.run_experiment(cfg, out, resume=True, progress=False)   # complete: nothing to redo
    assert _states(out) == before
    # A config saved before a key existed matches that key's default.
    path = os.path.join(out, "config.json")
    saved = json.load(open(path))
    del saved["grad_clamp"]
    write_atomic(path, json.dumps(saved))
    loop.run_experiment(cfg, out, resume=True, progress=False)
    with pytest.raises(FileExistsError, match="grad_clamp=None there, 0.1 here"):
        loop.run_experiment({**cfg, "grad_clamp": 0.1}, out, resume=True, progress=False)


def test_write_atomic_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    write_atomic(str(path), "old")

    def broken(fd):
        raise OSError("disk full")
    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(str(path), "new")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["state.json"]


@pytest.mark.parametrize("target,epochs,calls", [(None, 3, 6), (0.0, 3, 2)])
def test_train_epochs_or_until_accuracy(target, epochs, calls):
    model = MLP(in_features=4, num_classes=2, hidden=(3,))
    seen = []
    model.register_forward_hook(lambda *a: seen.append(1))
    cfg = loop.default_config(epochs=epochs, train_accuracy=target, batch_size=5)
    loop.train_model(model, torch.randn(10, 4), torch.arange(10) % 2, cfg, torch.Generator())
    assert len(seen) == calls


def test_seed_for_is_stable_and_distinct():
    assert loop.seed_for(0, "train", 1) == loop.seed_for(0, "train", 1)
    assert len({loop.seed_for(s, k, r) for s in (0, 1) for k in ("train", "select")
                for r in range(3)}) == 12


def test_pool_too_small_for_the_schedule(tmp_path):
    with pytest.raises(ValueError, match=r"10 \+ rounds=3 x query=50 = 160 labels .* pool has 150"):
        loop.run_experiment(_config(query=50), str(tmp_path / "x"), progress=False)
    assert not os.path.exists(tmp_path / "x")      # nothing written, a fixed config may use it


def test_unknown_config_key():
    with pytest.raises(ValueError, match="unknown config keys \\['epoch'\\]"):
        loop.default_config(epoch=3)
