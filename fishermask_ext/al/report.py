"""Learning curves of a results folder: CSV, JSON, a PNG plot and a markdown summary.

    write_report("results/digits-mlp")   # writes curves.csv, curves.json, curves.png, summary.md

Curves are averaged over the seeds at each label count; the spread is the standard deviation
over seeds (0 with one seed). AULC is the area under the accuracy curve divided by the range of
label counts (trapezoid rule), per seed whose run is complete, then averaged. A partial folder
(some runs unfinished) says so: every point and AULC with fewer seeds than the config's is
marked with its real count, in the table and the plot (hollow markers). A run whose state.json
cannot be read is skipped and named; the intact runs are still reported.
"""
import csv
import glob
import io
import os
import statistics
import textwrap

from .io import atomic_path, read_json, write_atomic, write_json

__all__ = ["load_rows", "aggregate", "write_report"]

FIELDS = ("strategy", "seed", "round", "n_labeled", "accuracy", "train_accuracy", "train_s",
          "select_s")


def load_rows(out_dir):
    """(config, rows, skipped): one row per completed round of every readable run under
    `out_dir`/runs, and {path: reason} of the state files that could not be read."""
    path = os.path.join(out_dir, "config.json")
    if not os.path.isfile(path):
        what = "is not a folder" if not os.path.isdir(out_dir) else "has no config.json"
        raise FileNotFoundError(f"{out_dir} {what}: it is not a results folder; pass the "
                                f"folder `fishermask run` wrote (e.g. results/digits-mlp)")
    config = read_json(path)
    rows, skipped = [], {}
    for path in sorted(glob.glob(os.path.join(out_dir, "runs", "*", "state.json"))):
        try:
            state = read_json(path)
            rows += [dict(strategy=state["strategy"], seed=state["seed"],
                          sizes=state.get("sizes"),     # absent in runs from before it
                          **{k: h[k] for k in FIELDS[2:]}) for h in state["history"]]
        except (ValueError, KeyError, TypeError) as exc:   # cut off, edited, or not a state
            skipped[path] = (f"{exc}" if isinstance(exc, ValueError) else
                             f"not a run state (missing {exc})")
    if not rows:
        broken = "".join(f"; {p}: {r}" for p, r in skipped.items())
        raise FileNotFoundError(f"{out_dir} holds no completed round (no readable "
                                f"runs/*/state.json){broken}")
    return config, rows, skipped


def _mean_std(values):
    return (statistics.fmean(values), statistics.pstdev(values) if len(values) > 1 else 0.0)


def _aulc(points):
    """Normalised area under one seed's curve [(n_labeled, accuracy), ...]."""
    if len(points) < 2:
        return points[0][1] if points else float("nan")
    area = sum((n1 - n0) * (a0 + a1) / 2 for (n0, a0), (n1, a1) in zip(points, points[1:]))
    return area / (points[-1][0] - points[0][0])


def aggregate(rows, order=None, rounds=None):
    """{strategy: {n_labeled, mean, std, n_seeds, aulc, aulc_std, aulc_seeds, select_s,
    train_s}}. With `rounds` (the config's), AULC counts only the seeds whose runs have all
    rounds + 1 points (a partial curve's area is not comparable); aulc is None without one."""
    names = [s for s in (order or []) if any(r["strategy"] == s for r in rows)]
    names += sorted({r["strategy"] for r in rows} - set(names))
    out = {}
    for name in names:
        mine = [r for r in rows if r["strategy"] == name]
        counts = sorted({r["n_labeled"] for r in mine})
        stats = [_mean_std([r["accuracy"] for r in mine if r["n_labeled"] == n]) for n in counts]
        per_seed = [[(r["n_labeled"], r["accuracy"]) for r in sorted(mine, key=lambda r: r["round"])
                     if r["seed"] == s] for s in sorted({r["seed"] for r in mine})]
        complete = [p for p in per_seed if rounds is None or len(p) == rounds + 1]
        aulc = _mean_std([_aulc(p) for p in complete]) if complete else (None, None)
        sel = [r["select_s"] for r in mine if r["select_s"] is not None]
        out[name] = dict(n_labeled=counts, mean=[m for m, _ in stats], std=[s for _, s in stats],
                         n_seeds=[sum(r["n_labeled"] == n for r in mine) for n in counts],
                         aulc=aulc[0], aulc_std=aulc[1], aulc_seeds=len(complete),
                         select_s=statistics.fmean(sel) if sel else None,
                         train_s=statistics.fmean(r["train_s"] for r in mine))
    return out


def _csv(rows):
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(sorted(rows, key=lambda r: (r["strategy"], r["seed"], r["round"])))
    return buf.getvalue()


def _plot(curves, title, path, planned):
    # Imported here, not at the top: choosing the Agg backend at import time would change the
    # backend of a notebook that only imports this module for aggregate().
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=100)
    partial = False
    for name, c in curves.items():
        lo = [m - s for m, s in zip(c["mean"], c["std"])]
        hi = [m + s for m, s in zip(c["mean"], c["std"])]
        (line,) = ax.plot(c["n_labeled"], c["mean"], marker=".", label=name)
        ax.fill_between(c["n_labeled"], lo, hi, alpha=0.15, color=line.get_color())
        few = [i for i, k in enumerate(c["n_seeds"]) if k < planned]
        if few:       # hollow markers: points with fewer seeds than the config's
            partial = True
            ax.plot([c["n_labeled"][i] for i in few], [c["mean"][i] for i in few], "o",
                    markerfacecolor="white", color=line.get_color())
    ax.set_xlabel("number of labeled examples")
    # No spread from one seed: the band would claim one.
    ax.set_ylabel("test accuracy" + (f" (mean ± std over {planned} seeds)" if planned > 1 else
                                     ", one seed"))
    if partial:
        title += f" - PARTIAL: hollow points have fewer than {planned} seeds"
    ax.set_title("\n".join(textwrap.wrap(title, 75)), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)


def _title(config):
    return (f"{config['dataset']}{_classes(config.get('imbalance'))}, {config['model']}, "
            f"{len(config['seeds'])} seed(s), +{config['query']} per round")


def _classes(spec):
    """', imbalance 0:25,1:500' or, for equal counts (a balanced preset), ', 10 classes x 58'."""
    if not spec:
        return ""
    from .data import parse_imbalance
    counts = parse_imbalance(spec) if isinstance(spec, str) else dict(spec)
    if len(set(counts.values())) == 1:
        return f", balanced: {len(counts)} classes x {next(iter(counts.values()))}"
    return f", imbalance {spec}"


def _cell(mean, std, n, planned):
    """'0.812 ± 0.010', or with fewer seeds than planned '0.812 ± 0.010 (2 of 3 seeds)'; no ±
    from a single seed (a spread of one value is no spread)."""
    text = f"{mean:.3f}" + (f" ± {std:.3f}" if n > 1 else "")
    return text + (f" ({n} of {planned} seeds)" if n < planned else "")


def summary_markdown(curves, config, rows=None, skipped=None):
    """The markdown summary: AULC, accuracy at each label count, mean times per round; points
    with fewer seeds than the config's are marked, and unfinished runs listed (from `rows`)."""
    planned = len(config["seeds"])
    counts = sorted({n for c in curves.values() for n in c["n_labeled"]})
    head = ["strategy", "AULC"] + [f"acc@{n}" for n in counts] + ["select s/round",
                                                                  "train s/round"]
    sizes = next((r["sizes"] for r in rows or [] if r.get("sizes")), None)
    lines = [f"# {_title(config)}", ""]
    if sizes:
        lines += [f"Pool: {sizes['pool']:,} images; test set: {sizes['test']:,} images.", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, c in curves.items():
        acc = dict(zip(c["n_labeled"], zip(c["mean"], c["std"], c["n_seeds"])))
        aulc = ("n/a (no seed finished)" if c["aulc"] is None else
                _cell(c["aulc"], c["aulc_std"], c["aulc_seeds"], planned))
        cells = [name, aulc] + [_cell(*acc[n], planned) if n in acc else "" for n in counts]
        cells += [f"{c['select_s']:.2f}" if c["select_s"] is not None else "",
                  f"{c['train_s']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "AULC: area under the accuracy curve / label range, per finished seed, mean ± "
              "std over seeds; acc@n: test accuracy with n labels, mean ± std over seeds."]
    unfinished = _unfinished(rows or [], config)
    if unfinished:
        lines += ["", f"**Partial results**: {len(unfinished)} of "
                  f"{len(config['strategies']) * planned} runs are unfinished ("
                  + ", ".join(unfinished) + "); marked cells count only the seeds there."]
    if skipped:
        lines += ["", "Skipped, unreadable: " + "; ".join(f"`{p}` ({r})"
                                                          for p, r in skipped.items())]
    return "\n".join(lines) + "\n"


def _unfinished(rows, config):
    """'strategy seed s (r of R rounds)' for every run of `config` without all its rounds."""
    done = {}
    for r in rows:
        done[(r["strategy"], r["seed"])] = done.get((r["strategy"], r["seed"]), 0) + 1
    total = config["rounds"] + 1
    return [f"{s} seed {seed} ({done.get((s, seed), 0)} of {total} rounds)"
            for s in config["strategies"] for seed in config["seeds"]
            if done.get((s, seed), 0) < total]


def write_report(out_dir):
    """Write curves.csv, curves.json, curves.png and summary.md into `out_dir`; return their
    paths, and under "skipped" {path: reason} of the run states that could not be read."""
    config, rows, skipped = load_rows(out_dir)
    curves = aggregate(rows, config.get("strategies"), config.get("rounds"))
    paths = {k: os.path.join(out_dir, f) for k, f in (("csv", "curves.csv"), ("json", "curves.json"),
                                                      ("png", "curves.png"),
                                                      ("summary", "summary.md"))}
    write_atomic(paths["csv"], _csv(rows))
    write_json(paths["json"], dict(config=config, curves=curves, skipped=skipped))
    write_atomic(paths["summary"], summary_markdown(curves, config, rows, skipped))
    _plot(curves, _title(config), paths["png"], len(config["seeds"]))
    return dict(paths, skipped=skipped)
