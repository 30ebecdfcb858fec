"""The tables of docs/RESULTS.md and the README, from results folders of `fishermask run`.

    python docs/results_tables.py summary results/fashion-mnist results/digits-balanced ...
    python docs/results_tables.py ablation results/fashion-mnist-imbalanced [--seeds 0,1,2]
    python docs/results_tables.py minority results/fashion-mnist-imbalanced

summary: AULC (mean over seeds) of every strategy in each folder, one row per folder.
ablation: FisherMask's row weight x mask (classifier only = the `bait` strategy, Fisher mask =
`fishermask`) x λ, from the folder and its `<folder>-abl-*` siblings; each row is labeled by the
options its strategy really ran with (read back from config.json), not by the folder's name.
minority: the share of the picked images that come from the classes the imbalance spec caps
below its largest count.
"""
import argparse
import glob
import os
import statistics
import sys

# The ablation rows are labeled by the options the strategies get from this checkout's code
# (its defaults): import the package of the checkout this script is in, not an installed one.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fishermask_ext import strategies  # noqa: E402
from fishermask_ext.al import data, report
from fishermask_ext.al.io import read_json  # noqa: E402


def _curves(folder, seeds=None):
    config, rows, skipped = report.load_rows(folder)
    for path, reason in skipped.items():     # as `fishermask report` does: named, not fatal
        print(f"skipped {path}: {reason}", file=sys.stderr)
    if seeds is not None:
        rows = [r for r in rows if r["seed"] in seeds]
    return config, report.aggregate(rows, config["strategies"])


def summary(folders):
    curves = {f: _curves(f)[1] for f in folders}
    names = list(dict.fromkeys(n for c in curves.values() for n in c))
    lines = ["| setting | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for folder, c in curves.items():
        best = max(v["aulc"] for v in c.values())
        cells = [(f"**{c[n]['aulc']:.3f}**" if c[n]["aulc"] == best else f"{c[n]['aulc']:.3f}")
                 if n in c else "" for n in names]
        lines.append(f"| {os.path.basename(os.path.normpath(folder))} | " + " | ".join(cells)
                     + " |")
    return "\n".join(lines)


def ablation(folder, seeds=None):
    rows = {}
    for path in [folder] + sorted(glob.glob(os.path.normpath(folder) + "-abl-*")):
        config, curves = _curves(path, seeds)
        for name in ("fishermask", "fishermask_reference", "bait", "random"):
            if name not in curves:
                continue
            if name == "random":            # the baseline, no options
                rows[("random (baseline)", "", 0.0, "")] = (os.path.basename(path),
                                                            curves[name])
                continue
            s = strategies.get(name, **config["strategy_options"].get(name, {}))
            mask = {"bait": "classifier only (bait)", "fishermask": "Fisher mask (fishermask)",
                    "fishermask_reference": "Fisher mask, reference variant (parity, "
                    "first images in step A)"}[name]
            key = (mask, s.weighting, s.lamb, s.backward_steps)
            if key in rows:
                raise ValueError(f"{path}: {key} already comes from {rows[key][0]}")
            rows[key] = (os.path.basename(path), curves[name])
    lines = ["| mask | row weight | λ | backward steps | AULC | final accuracy | seeds | folder |",
             "|---|---|---|---|---|---|---|---|"]
    for key in sorted(rows, key=lambda k: (k[0], k[1], -k[2], str(k[3]))):
        where, c = rows[key]
        weight, lamb = (f"`{key[1]}`", f"{key[2]:g}") if key[1] else ("", "")
        lines.append(f"| {key[0]} | {weight} | {lamb} | {key[3]} | "
                     f"{c['aulc']:.3f} ± {c['aulc_std']:.3f} | "
                     f"{c['mean'][-1]:.3f} ± {c['std'][-1]:.3f} | {c['n_seeds'][-1]} | {where} |")
    return "\n".join(lines)


def minority(folder):
    config = read_json(os.path.join(folder, "config.json"))
    train_y = data.load(config["dataset"], data_dir=config["data_dir"],
                        split_seed=config["split_seed"], imbalance=config["imbalance"],
                        pool_size=config["pool_size"], test_size=config["test_size"])[1]
    if not config["imbalance"]:
        raise ValueError(f"{folder} has no imbalance spec: no class is rare by design")
    # The classes the spec caps below its largest count (load relabels them 0..k-1 in order).
    spec = data.parse_imbalance(config["imbalance"])
    rare = {i for i, c in enumerate(sorted(spec)) if spec[c] < max(spec.values())}
    counts = train_y.bincount()
    share = {}
    for path in sorted(glob.glob(os.path.join(folder, "runs", "*", "state.json"))):
        try:
            state = read_json(path)
        except ValueError as exc:            # cut off mid-write: named and left out, as above
            print(f"skipped {path}: {exc}", file=sys.stderr)
            continue
        picked = [i for h in state["history"] for i in h["picked"]]
        share.setdefault(state["strategy"], []).append(
            sum(int(train_y[i]) in rare for i in picked) / max(len(picked), 1))
    pool_share = sum(int(counts[c]) for c in rare) / len(train_y)
    return (f"pool {pool_share:.2f}; " + ", ".join(
        f"{n} {statistics.fmean(share[n]):.2f}" for n in config["strategies"] if n in share))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("table", choices=("summary", "ablation", "minority"))
    p.add_argument("folders", nargs="+")
    p.add_argument("--seeds", default=None, help="comma list: only these seeds (ablation)")
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    if args.table == "summary":
        print(summary(args.folders))
    for folder in args.folders if args.table != "summary" else []:
        print(ablation(folder, seeds) if args.table == "ablation" else minority(folder))


if __name__ == "__main__":
    main()
