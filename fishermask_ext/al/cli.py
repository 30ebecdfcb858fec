"""The `fishermask` command: run an active-learning experiment, select a batch, benchmark.

    fishermask run                      # small digits experiment into ./results/digits-mlp/
    fishermask run --dataset fashion-mnist --pool-size 3000 --model small_cnn --seeds 0,1,2
    fishermask report results/digits-mlp
    fishermask select emb.pt --budget 10 --out picks.txt
    fishermask bench -k select
"""
import argparse
import os
import re
import subprocess
import sys

import torch

from ..ops import BACKENDS
from ..select import select_batch
from . import config as schema
from . import presets
from .loop import run_experiment
from .report import write_report

__all__ = ["main"]


def _parser():
    p = argparse.ArgumentParser(prog="fishermask", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run an active-learning experiment and write its report")
    schema.add_arguments(r)
    presets.add_arguments(r)     # --preset, --scale
    r.add_argument("--out", default=None, help="results folder (default ./results/<name>)")
    r.add_argument("--name", default=None, help="default: <dataset>-<model>[-imbalanced]")
    r.add_argument("--resume", action="store_true", help="continue an interrupted experiment")
    r.add_argument("--no-progress", action="store_true")
    s = sub.add_parser("select", help="pick a batch from saved embeddings with select_batch")
    s.add_argument("embeddings", help=".pt file: a tensor [N, C, D] of the unlabeled points, "
                                      "or a dict with 'unlabeled' and optional 'labeled'")
    s.add_argument("--budget", type=int, required=True)
    s.add_argument("--out", required=True, help="indices file: .pt (a tensor), else text")
    s.add_argument("--lamb", type=float, default=1.0)
    s.add_argument("--backward-steps", type=int, default=0)
    s.add_argument("--backend", choices=BACKENDS, default="auto")
    rep = sub.add_parser("report", help="(re)write the curves, plot and summary of a results "
                                        "folder, also of an unfinished one")
    rep.add_argument("folder")
    sub.add_parser("bench", help="run benchmarks/ with pytest-benchmark (extra arguments go "
                                 "to pytest, e.g. -k select)")
    return p


def _run(args):
    presets.apply(args)          # the preset's values where no flag was given
    config = schema.default_config(**schema.from_args(args))
    name = args.name or re.sub(r"[^\w.-]+", "-", f"{args.dataset}-{args.model}" +
                               ("-imbalanced" if args.imbalance else ""))
    out = args.out or os.path.join("results", name)
    run_experiment(config, out, resume=args.resume, progress=not args.no_progress)
    args.folder = out
    return _report(args)


def _report(args):
    paths = write_report(args.folder)
    with open(paths["summary"]) as f:
        print(f.read())
    print("wrote " + ", ".join(paths.values()))
    return 0


def _select(args):
    saved = torch.load(args.embeddings, weights_only=True)
    if isinstance(saved, torch.Tensor):
        saved = {"unlabeled": saved}
    if not isinstance(saved, dict) or "unlabeled" not in saved:
        raise ValueError(f"{args.embeddings} must hold a tensor [N, C, D] or a dict with "
                         f"'unlabeled' [N, C, D] and optional 'labeled' [n_L, C, D]")
    picks = select_batch(saved["unlabeled"], args.budget, labeled=saved.get("labeled"),
                         lamb=args.lamb, backward_steps=args.backward_steps,
                         backend=args.backend)
    if args.out.endswith(".pt"):
        torch.save(picks, args.out)
    else:
        with open(args.out, "w") as f:
            f.write("".join(f"{i}\n" for i in picks.tolist()))
    print(f"picked {len(picks)} of {len(saved['unlabeled'])} points; wrote {args.out}")
    return 0


def _bench(args):
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))  # the checkout
    bench_dir = os.path.join(root, "benchmarks")
    if not os.path.isdir(bench_dir):
        raise FileNotFoundError(f"no benchmarks folder at {bench_dir}; `fishermask bench` runs "
                                f"from a source checkout")
    cmd = [sys.executable, "-m", "pytest", bench_dir, "--benchmark-enable", "--benchmark-only",
           "-p", "no:cacheprovider", *args.pytest_args]
    return subprocess.call(cmd, cwd=root)


def main(argv=None):
    """Entry point of the `fishermask` console script; returns the exit status."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "bench":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.pytest_args = extra
    try:
        commands = {"run": _run, "report": _report, "select": _select, "bench": _bench}
        return commands[args.command](args)
    except (ValueError, TypeError, OSError) as exc:
        print(f"fishermask {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
