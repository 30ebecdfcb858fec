"""Honest reports (partial runs marked, warm-up before timing) and everything `fishermask
select` takes (.npy/.pt, --labeled, --labeled-fisher, --lamb, --backward-steps, --parity,
--gains, a progress bar)."""
import json

import numpy as np
import pytest
import torch
from testing import tiny_run

from fishermask_ext import fisher_matrix, select_batch
from fishermask_ext.al import cli, preflight
from fishermask_ext.al import loop as loop_mod

TINY = tiny_run(strategies="random,entropy", rounds=2, seeds=None, epochs=2)


# Item 4: a partial run is marked with its real seed count.
def test_partial_run_is_marked_with_its_real_seed_count(tmp_path, capsys):
    out = tmp_path / "exp"
    assert cli.main(["run", *TINY, "--seeds", "0,1", "--out", str(out)]) == 0
    path = out / "runs" / "random-seed1" / "state.json"
    state = json.loads(path.read_text())
    state.update(history=state["history"][:1], done=False)   # interrupted after round 0
    path.write_text(json.dumps(state))
    capsys.readouterr()
    assert cli.main(["report", str(out)]) == 0
    summary = (out / "summary.md").read_text()
    random_row = next(line for line in summary.splitlines() if line.startswith("| random |"))
    cells = [c.strip() for c in random_row.strip("|").split("|")]
    assert cells[1].endswith("(1 of 2 seeds)")            # AULC: only the finished seed
    assert "±" not in cells[1] and "±" not in cells[3]    # no spread from one value
    assert cells[3].endswith("(1 of 2 seeds)") and cells[4].endswith("(1 of 2 seeds)")
    assert "(" not in cells[2] and "±" in cells[2]        # acc@10: both seeds
    entropy_row = next(line for line in summary.splitlines() if line.startswith("| entropy |"))
    assert "of 2 seeds" not in entropy_row
    assert "**Partial results**: 1 of 4 runs are unfinished (random seed 1 (1 of 3 rounds))" \
        in summary
    curves = json.loads((out / "curves.json").read_text())["curves"]
    assert curves["random"]["n_seeds"] == [2, 1, 1] and curves["random"]["aulc_seeds"] == 1


# Item 4: the one-time warm-up is paid before anything is timed, and changes no result.
def test_warm_up_runs_every_strategy_before_timing(tmp_path, monkeypatch, spy_select):
    events = []
    real_warm, real_train = preflight.warm_up, loop_mod.train_model
    spy_select(lambda name, select, *a: events.append(("select", name)) or select(*a))
    monkeypatch.setattr(preflight, "warm_up",
                        lambda c, a: events.append("warm up") or real_warm(c, a))
    monkeypatch.setattr(loop_mod, "train_model",
                        lambda *a: events.append("timed train") or real_train(*a))
    cfg = dict(pool_size=80, test_size=40, model_options={"hidden": [8]},
               strategies=["fishermask", "random"], initial=10, query=5, rounds=1, seeds=[0],
               epochs=2)
    loop_mod.run_experiment(cfg, str(tmp_path / "a"), progress=False)
    first_timed = events.index("timed train")
    assert events.index("warm up") < first_timed
    assert {("select", "fishermask"), ("select", "random")} <= set(events[:first_timed])
    # The same experiment without the warm-up ends in the same labels and accuracies.
    monkeypatch.setattr(preflight, "warm_up", lambda c, a: None)
    loop_mod.run_experiment(cfg, str(tmp_path / "b"), progress=False)
    for run in ("fishermask-seed0", "random-seed0"):
        a, b = (json.loads((tmp_path / f / "runs" / run / "state.json").read_text())
                for f in "ab")
        assert a["labeled"] == b["labeled"]
        assert [h["accuracy"] for h in a["history"]] == [h["accuracy"] for h in b["history"]]


# Item 5: select completeness.
@pytest.fixture
def pool(tmp_path):
    g = torch.Generator().manual_seed(0)
    X, L = torch.randn(40, 3, 6, generator=g), torch.randn(8, 3, 6, generator=g)
    np.save(tmp_path / "X.npy", X.numpy())
    torch.save(L, tmp_path / "L.pt")
    torch.save(fisher_matrix(L), tmp_path / "FL.pt")
    return X, L


def _picks(path):
    return [int(line.split()[0]) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("flags, kw", [
    (["--labeled", "{d}/L.pt"], dict(labeled="L")),
    (["--labeled-fisher", "{d}/FL.pt", "--n-labeled", "8"], dict(labeled_fisher="FL",
                                                                 n_labeled=8)),
    (["--lamb", "0.01", "--backward-steps", "1"], dict(lamb=0.01, backward_steps=1)),
    (["--parity", "--labeled", "{d}/L.pt"], dict(parity=True, labeled="L")),
], ids=["labeled", "labeled-fisher", "lamb-backward", "parity"])
def test_select_options_match_select_batch(tmp_path, pool, flags, kw):
    X, L = pool
    values = {"L": L, "FL": fisher_matrix(L)}
    want = select_batch(X, 5, **{k: values.get(v, v) if isinstance(v, str) else v
                                 for k, v in kw.items()}).tolist()
    out = tmp_path / "p.txt"
    argv = ["select", str(tmp_path / "X.npy"), "--budget", "5", "--out", str(out),
            "--no-progress", *[f.format(d=tmp_path) for f in flags]]
    assert cli.main(argv) == 0
    assert _picks(out) == want


def test_select_gains_npy_out_and_progress_bar(tmp_path, pool, capsys):
    X, L = pool
    out = tmp_path / "p.txt"
    assert cli.main(["select", str(tmp_path / "X.npy"), "--budget", "5", "--out", str(out),
                     "--labeled", str(tmp_path / "L.pt"), "--gains"]) == 0
    assert "selecting" in capsys.readouterr().err                  # the tqdm bar, on by default
    picks, gains = select_batch(X, 5, labeled=L, return_gains=True)
    rows = [line.split() for line in out.read_text().splitlines()]
    assert [int(r[0]) for r in rows] == picks.tolist()
    assert [float(r[1]) for r in rows] == gains.tolist()
    npy = tmp_path / "p.npy"
    assert cli.main(["select", str(tmp_path / "X.npy"), "--budget", "5", "--out", str(npy),
                     "--labeled", str(tmp_path / "L.pt"), "--no-progress"]) == 0
    assert np.load(npy).tolist() == picks.tolist()


def test_select_labeled_positions_of_a_file_pool(tmp_path, pool):
    """--labeled as pool positions (as --out writes them) works for a .npy pool too."""
    from fishermask_ext import select_from_pool
    X, _ = pool
    (tmp_path / "lab.txt").write_text("3\n17\n30\n")
    out = tmp_path / "p.txt"
    assert cli.main(["select", str(tmp_path / "X.npy"), "--budget", "4", "--out", str(out),
                     "--labeled", str(tmp_path / "lab.txt"), "--no-progress"]) == 0
    mask = torch.zeros(40, dtype=torch.bool)
    mask[[3, 17, 30]] = True
    assert _picks(out) == select_from_pool(X, 4, mask).tolist()


def test_select_conflicting_inputs(tmp_path, pool, capsys):
    base = ["select", str(tmp_path / "X.npy"), "--budget", "5", "--out", str(tmp_path / "p.txt")]
    assert cli.main([*base, "--labeled", str(tmp_path / "L.pt"), "--labeled-fisher",
                     str(tmp_path / "FL.pt"), "--n-labeled", "8"]) == 2
    # The library's own checks (select_batch), not copies of them in the command.
    assert "give either labeled (embeddings) or --labeled-fisher, not both" \
        in capsys.readouterr().err
    assert cli.main([*base, "--labeled-fisher", str(tmp_path / "FL.pt")]) == 2
    assert "--labeled-fisher needs --n-labeled" in capsys.readouterr().err
    assert cli.main([*base[:-1], str(tmp_path / "p.npy"), "--gains"]) == 2
    assert "a .npy file holds one array" in capsys.readouterr().err
    assert not (tmp_path / "p.txt").exists() and not (tmp_path / "p.npy").exists()
