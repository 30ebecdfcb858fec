"""The reference-experiment presets: their values follow the protocol, flags override them, and
a preset runs end to end at a tiny scale on small files written here."""
import json
import os

import numpy as np
import pytest
from testing import write_cifar10

from fishermask_ext import strategies
from fishermask_ext.al import cli, config, data, presets

ALL_BUT_BAIT = [s for s in strategies.available() if s != "bait"]


def test_unknown_preset_lists_the_valid_ones(capsys, tmp_path):
    with pytest.raises(ValueError, match="preset must be one of 'cifar10-balanced', "
                                         "'cifar10-imbalanced', 'fashion-mnist-balanced'"):
        presets.preset_config("cifar")
    assert cli.main(["run", "--preset", "cifar", "--out", str(tmp_path / "x")]) == 2
    assert "preset must be one of 'cifar10-balanced', 'cifar10-imbalanced'" \
        in capsys.readouterr().err
    with pytest.raises(ValueError, match="scale must be one of 'full', 'small', got 'tiny'"):
        presets.preset_config("cifar10-balanced", scale="tiny")
    assert cli.main(["run", "--scale", "small", "--out", str(tmp_path / "x")]) == 2
    assert "--scale needs --preset" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "x")


def test_cifar_presets_need_a_data_dir(capsys, tmp_path):
    assert cli.main(["run", "--preset", "cifar10-imbalanced", "--out", str(tmp_path)]) == 2
    assert "needs --data-dir" in capsys.readouterr().err


def test_full_presets_follow_the_reference_protocol():
    imb = presets.preset_config("cifar10-imbalanced")
    assert imb["imbalance"] == "0:250,1:5000,2:250,3:250" and imb["dataset"] == "cifar10"
    assert (imb["initial"], imb["query"], imb["initial"] + imb["rounds"] * imb["query"]) == \
        (250, 250, 5750)                                          # up to the whole pool
    assert (imb["model"], imb["batch_size"], imb["augment"]) == ("resnet18_narrow", 128,
                                                                  "crop_flip")
    fm = presets.preset_config("fashion-mnist-balanced")
    assert fm["imbalance"] == ",".join(f"{c}:575" for c in range(10))
    assert (fm["batch_size"], fm["augment"]) == (64, "none")
    for cfg in (imb, fm, presets.preset_config("cifar10-balanced")):
        assert config.default_config(**cfg)       # valid config values
        assert cfg["strategies"] == strategies.available() and len(cfg["seeds"]) == 5
        assert (cfg["train_accuracy"], cfg["optimizer"], cfg["lr"], cfg["grad_clamp"]) == \
            (0.99, "adam", 1e-3, 0.1)
        assert cfg["reset_weights"] and cfg["keep_batchnorm"]
        assert cfg["untrained_first_query"] == ALL_BUT_BAIT
        assert cfg["strategy_options"]["fishermask"] == {"pct_top": 0.002}
        assert cfg["pool_order"] == "class"          # the reference's class-sorted pool
    small = presets.preset_config("cifar10-imbalanced", scale="small")
    assert small["imbalance"] == "0:25,1:500,2:25,3:25" and small["model"] == "small_cnn"
    assert small["pool_order"] == "class"
    assert (small["initial"], small["query"], small["seeds"]) == (25, 25, [0])


def test_small_preset_runs_every_strategy(fashion_dir, tmp_path, capsys):
    out = str(tmp_path / "run")
    tiny = dict(rounds=1, pool_size=150, test_size=50, epochs=10)     # the flags below
    args = ["run", "--preset", "fashion-mnist-balanced", "--scale", "small", "--data-dir",
            str(fashion_dir[0]), "--rounds", "1", "--pool-size", "150", "--test-size", "50",
            "--epochs", "10", "--set", "fishermask.n_samples=32",
            "--set", "fishermask_reference.n_samples=32", "--no-progress", "--out", out]
    assert cli.main(args) == 0
    saved = json.load(open(os.path.join(out, "config.json")))
    want = config.default_config(**{
        **presets.preset_config("fashion-mnist-balanced", "small"), **tiny,
        "data_dir": str(fashion_dir[0]),
        "strategy_options": {s: {"n_samples": 32} for s in ("fishermask",
                                                            "fishermask_reference")}})
    assert saved == want                                   # the preset, with the flags on top
    curves = json.load(open(os.path.join(out, "curves.json")))["curves"]
    assert list(curves) == strategies.available()
    assert all(c["n_labeled"] == [25, 50] for c in curves.values())
    assert "| fishermask_reference |" in capsys.readouterr().out


def test_preset_names_the_default_folder(fashion_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", "--preset", "fashion-mnist-balanced", "--scale", "small",
                     "--data-dir", str(fashion_dir[0]), "--strategies", "random", "--rounds", "0",
                     "--test-size", "50", "--epochs", "1", "--no-progress"]) == 0
    assert os.path.isfile(tmp_path / "results" / "fashion-mnist-balanced-small" / "summary.md")


def test_small_cifar10_imbalanced_preset_runs(tmp_path, capsys):
    # CIFAR-10-format files with the small preset's counts (25 / 500 / 25 / 25 of classes 0-3,
    # plus images of the classes it drops): the preset's whole path, crop_flip included.
    rng = np.random.default_rng(0)
    patterns = rng.integers(0, 200, (10, 3072))
    labels = np.repeat(np.arange(10), [30, 505, 30, 30, 5, 5, 5, 5, 5, 5])
    rng.shuffle(labels)
    parts = np.array_split(labels, 5)

    def rows(y):
        return (patterns[y] + rng.integers(0, 56, (len(y), 3072))).astype(np.uint8), y
    batches = {name: rows(y) for name, y in zip(data.CIFAR10_FILES, parts)}
    batches["test_batch"] = rows(np.repeat(np.arange(10), 10))
    write_cifar10(tmp_path, batches)
    out = str(tmp_path / "run")
    assert cli.main(["run", "--preset", "cifar10-imbalanced", "--scale", "small", "--data-dir",
                     str(tmp_path), "--strategies", "random,fishermask,fishermask_reference",
                     "--rounds", "1", "--epochs", "2", "--set", "fishermask.n_samples=32",
                     "--set", "fishermask_reference.n_samples=32", "--no-progress",
                     "--test-size", "40", "--out", out]) == 0     # the 40 written above
    saved = json.load(open(os.path.join(out, "config.json")))
    assert (saved["dataset"], saved["imbalance"], saved["augment"]) == \
        ("cifar10", "0:25,1:500,2:25,3:25", "crop_flip")
    curves = json.load(open(os.path.join(out, "curves.json")))["curves"]
    assert all(c["n_labeled"] == [25, 50] for c in curves.values())
    assert "| fishermask_reference |" in capsys.readouterr().out
