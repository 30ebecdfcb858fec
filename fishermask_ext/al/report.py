"""Learning curves of a results folder: CSV, JSON, a PNG plot and a markdown summary.

    write_report("results/digits-mlp")   # writes curves.csv, curves.json, curves.png, summary.md

Curves are averaged over the seeds at each label count; the spread is the standard deviation
over seeds (0 with one seed). AULC is the area under the accuracy curve divided by the range of
label counts (trapezoid rule), per seed, then averaged.
"""
import csv
import glob
import io
import os
import statistics
import textwrap

from .io import read_json, write_atomic, write_json

__all__ = ["load_rows", "aggregate", "write_report"]

FIELDS = ("strategy", "seed", "round", "n_labeled", "accuracy", "train_accuracy", "train_s",
          "select_s")


def load_rows(out_dir):
    """(config, rows): one row per completed round of every run under `out_dir`/runs."""
    config = read_json(os.path.join(out_dir, "config.json"))
    rows = []
    for path in sorted(glob.glob(os.path.join(out_dir, "runs", "*", "state.json"))):
        state = read_json(path)
        rows += [dict(strategy=state["strategy"], seed=state["seed"],
                      **{k: h[k] for k in FIELDS[2:]}) for h in state["history"]]
    if not rows:
        raise FileNotFoundError(f"{out_dir} holds no completed round (no runs/*/state.json)")
    return config, rows


def _mean_std(values):
    return (statistics.fmean(values), statistics.pstdev(values) if len(values) > 1 else 0.0)


def _aulc(points):
    """Normalised area under one seed's curve [(n_labeled, accuracy), ...]."""
    if len(points) < 2:
        return points[0][1] if points else float("nan")
    area = sum((n1 - n0) * (a0 + a1) / 2 for (n0, a0), (n1, a1) in zip(points, points[1:]))
    return area / (points[-1][0] - points[0][0])


def aggregate(rows, order=None):
    """{strategy: {n_labeled, mean, std, n_seeds, aulc, aulc_std, select_s, train_s}}."""
    names = [s for s in (order or []) if any(r["strategy"] == s for r in rows)]
    names += sorted({r["strategy"] for r in rows} - set(names))
    out = {}
    for name in names:
        mine = [r for r in rows if r["strategy"] == name]
        counts = sorted({r["n_labeled"] for r in mine})
        stats = [_mean_std([r["accuracy"] for r in mine if r["n_labeled"] == n]) for n in counts]
        per_seed = [[(r["n_labeled"], r["accuracy"]) for r in sorted(mine, key=lambda r: r["round"])
                     if r["seed"] == s] for s in sorted({r["seed"] for r in mine})]
        aulc = _mean_std([_aulc(p) for p in per_seed])
        sel = [r["select_s"] for r in mine if r["select_s"] is not None]
        out[name] = dict(n_labeled=counts, mean=[m for m, _ in stats], std=[s for _, s in stats],
                         n_seeds=[sum(r["n_labeled"] == n for r in mine) for n in counts],
                         aulc=aulc[0], aulc_std=aulc[1],
                         select_s=statistics.fmean(sel) if sel else None,
                         train_s=statistics.fmean(r["train_s"] for r in mine))
    return out


def _csv(rows):
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(sorted(rows, key=lambda r: (r["strategy"], r["seed"], r["round"])))
    return buf.getvalue()


def _plot(curves, title, path):
    # Imported here, not at the top: choosing the Agg backend at import time would change the
    # backend of a notebook that only imports this module for aggregate().
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=100)
    for name, c in curves.items():
        lo = [m - s for m, s in zip(c["mean"], c["std"])]
        hi = [m + s for m, s in zip(c["mean"], c["std"])]
        (line,) = ax.plot(c["n_labeled"], c["mean"], marker=".", label=name)
        ax.fill_between(c["n_labeled"], lo, hi, alpha=0.15, color=line.get_color())
    ax.set_xlabel("number of labeled examples")
    ax.set_ylabel("test accuracy (mean ± std over seeds)")
    ax.set_title("\n".join(textwrap.wrap(title, 75)), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path + ".tmp.png")
    plt.close(fig)
    os.replace(path + ".tmp.png", path)


def _title(config):
    extra = f", imbalance {config['imbalance']}" if config.get("imbalance") else ""
    return (f"{config['dataset']}{extra}, {config['model']}, "
            f"{len(config['seeds'])} seed(s), +{config['query']} per round")


def summary_markdown(curves, config):
    """The markdown summary: AULC, accuracy at each label count, mean times per round."""
    counts = sorted({n for c in curves.values() for n in c["n_labeled"]})
    head = ["strategy", "AULC"] + [f"acc@{n}" for n in counts] + ["select s/round",
                                                                  "train s/round"]
    lines = [f"# {_title(config)}", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, c in curves.items():
        acc = dict(zip(c["n_labeled"], zip(c["mean"], c["std"])))
        cells = [name, f"{c['aulc']:.3f} ± {c['aulc_std']:.3f}"]
        cells += [f"{acc[n][0]:.3f} ± {acc[n][1]:.3f}" if n in acc else "" for n in counts]
        cells += [f"{c['select_s']:.3g}" if c["select_s"] is not None else "",
                  f"{c['train_s']:.3g}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "AULC: area under the accuracy curve / label range, per seed, mean ± std "
              "over seeds; acc@n: test accuracy with n labels, mean ± std over seeds."]
    return "\n".join(lines) + "\n"


def write_report(out_dir):
    """Write curves.csv, curves.json, curves.png and summary.md into `out_dir`; return paths."""
    config, rows = load_rows(out_dir)
    curves = aggregate(rows, config.get("strategies"))
    paths = {k: os.path.join(out_dir, f) for k, f in (("csv", "curves.csv"), ("json", "curves.json"),
                                                      ("png", "curves.png"),
                                                      ("summary", "summary.md"))}
    write_atomic(paths["csv"], _csv(rows))
    write_json(paths["json"], dict(config=config, curves=curves))
    write_atomic(paths["summary"], summary_markdown(curves, config))
    _plot(curves, _title(config), paths["png"])
    return paths
