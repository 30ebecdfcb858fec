"""What a user notices. Progress on a terminal for long library calls
whatever the pool size; honest plot labels, titles and summary; --help text for every entry;
no made-up rate for a complete store (the bench runner's items: tests/benchmarks_runner)."""
import io
import json
import sys

import pytest
import torch
from testing import tiny_run

import fishermask_ext as fm
from fishermask_ext.al import cli, embed_cmd, presets, report
from fishermask_ext import _progress as progress

TINY = tiny_run(strategies="random,entropy")


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("delay, shown", [(0.0, True), (1e6, False)], ids=["after-delay",
                                                                            "short-call"])
def test_library_calls_show_progress_on_a_terminal_at_any_pool_size(monkeypatch, delay, shown):
    """Item 17: a bar only from 10,000 images (embeddings) or never (Fisher mask): small
    pools ran for minutes without a word. Now: on a terminal, once a call has run DELAY_S
    (0 here: at once; 1e6: never within this short call)."""
    monkeypatch.setattr(progress, "DELAY_S", delay)
    monkeypatch.setattr(sys, "stderr", _Terminal())
    torch.manual_seed(0)
    model = fm.get_model("mlp", in_features=64, num_classes=10, hidden=[16])
    pool = torch.randn(40, 1, 8, 8)
    mask = fm.fisher_mask(model, pool, pct_top=0.2)
    fm.masked_grad_embeddings(model, pool, mask)
    out = sys.stderr.getvalue()
    assert ("Fisher diagonal: 100%" in out and "embeddings: 100%" in out) == shown, out
    assert shown or out == ""


def test_no_bar_when_stderr_is_no_terminal(capsys):
    model = fm.get_model("mlp", in_features=64, num_classes=10, hidden=[16])
    fm.masked_grad_embeddings(model, torch.randn(8, 1, 8, 8),
                              fm.fisher_mask(model, torch.randn(8, 1, 8, 8), pct_top=0.2))
    assert capsys.readouterr().err == ""


def _figure_of(monkeypatch, draw):
    """The matplotlib figure `draw()` saves, caught before it is closed."""
    import matplotlib.pyplot as plt
    caught, close = [], plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: (caught.append(fig), close(fig)))
    draw()
    return caught[-1]


def test_one_seed_plot_claims_no_spread_and_summary_shows_sizes(tmp_path, monkeypatch):
    """Item 18: "mean ± std over seeds" with one seed; summary.md without pool and test sizes
    and with seconds in mixed precision (.3g)."""
    out = tmp_path / "exp"
    assert cli.main(["run", *TINY, "--out", str(out)]) == 0
    fig = _figure_of(monkeypatch, lambda: report.write_report(str(out)))
    assert fig.axes[0].get_ylabel() == "test accuracy, one seed"
    summary = (out / "summary.md").read_text()
    assert "Pool: 80 images; test set: 40 images." in summary
    for line in summary.splitlines():
        if line.startswith(("| random |", "| entropy |")):
            *_, select_s, train_s = [c.strip() for c in line.strip("|").split("|")]
            for cell in (select_s, train_s):
                assert cell.count(".") == 1 and len(cell.split(".")[1]) == 2, line


def test_balanced_preset_title_lists_no_imbalance():
    """Item 18: the balanced preset's title listed 10 per-class counts as an imbalance."""
    title = report._title(presets.preset_config("fashion-mnist-balanced", "small"))
    assert "balanced: 10 classes x 58" in title and "imbalance" not in title
    assert "imbalance 0:25,1:500" in report._title(
        presets.preset_config("cifar10-imbalanced", "small"))


@pytest.mark.parametrize("command", ["run", "report", "select", "embed"])
def test_every_help_entry_has_text_and_its_default(command):
    """Item 19: --no-progress, --backend, report's folder, --optimizer, --pool-order and
    --scale had no help text or no default."""
    _, commands = cli._parser()
    for action in commands[command]._actions:
        if action.dest == "help":
            continue
        name = "/".join(action.option_strings) or action.dest
        assert action.help, f"{command} {name} has no help text"
        if action.choices:
            assert "default" in action.help, f"{command} {name} does not say its default"


def test_resume_of_a_complete_store_reports_no_rate(tmp_path, capsys):
    """Item 19: `embed --resume` on a complete store reported "1,915,161 img/s"."""
    torch.manual_seed(0)
    model = fm.get_model("mlp", in_features=64, num_classes=10, hidden=[8])
    ckpt, out = str(tmp_path / "model.pt"), str(tmp_path / "pool.store")
    embed_cmd.save_checkpoint(ckpt, model, "mlp", 10, {"hidden": [8]})
    pool = ["--dataset", "digits", "--pool-size", "150", "--out", out]
    assert cli.main(["embed", ckpt, *pool, "--no-progress"]) == 0
    capsys.readouterr()
    assert cli.main(["embed", ckpt, *pool, "--resume"]) == 0      # with its progress bar
    captured = capsys.readouterr()
    assert "0 of 1 chunks computed now" in captured.out
    final = captured.err.strip().split("\r")[-1]
    assert "150/150" in final and "?img/s" in final, final
    assert json.loads((tmp_path / "pool.store" / "embed.json").read_text())["mask"] == \
        "fishermask"
