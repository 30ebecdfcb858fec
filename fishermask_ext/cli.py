"""The `fishermask` command: run an active-learning experiment, select a batch, benchmark.

    fishermask run                      # small digits experiment into ./results/digits-mlp/
    fishermask run --dataset fashion-mnist --pool-size 3000 --model small_cnn --seeds 0,1,2
    fishermask report results/digits-mlp
    fishermask select emb.pt --budget 10 --out picks.txt
    fishermask bench -k select
"""
import argparse
import json
import os
import re
import subprocess
import sys

from .loop import DEFAULTS

__all__ = ["main"]


def _ints(text):
    return [int(v) for v in text.split(",") if v.strip()]


def _names(text):
    return [v.strip() for v in text.split(",") if v.strip()]


def _value(text):
    try:
        return json.loads(text)
    except ValueError:
        return text


def _options(pairs, nested):
    """["a.b=1", ...] -> {"a": {"b": 1}} (nested) or ["b=1"] -> {"b": 1}."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or (nested and "." not in key):
            form = "STRATEGY.KEY=VALUE" if nested else "KEY=VALUE"
            raise ValueError(f"bad option {pair!r}; expected {form}")
        if nested:
            name, key = key.split(".", 1)
            out.setdefault(name, {})[key] = _value(value)
        else:
            out[key] = _value(value)
    return out


def _parser():
    d = DEFAULTS
    p = argparse.ArgumentParser(prog="fishermask", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run an active-learning experiment and write its report")
    r.add_argument("--dataset", default=d["dataset"],
                   help="digits | fashion-mnist | cifar10 | torchvision:<Name>")
    r.add_argument("--data-dir", default=d["data_dir"])
    r.add_argument("--imbalance", default=d["imbalance"],
                   help="per-class counts of the pool, e.g. 0:250,1:5000,2:250,3:250")
    r.add_argument("--pool-size", type=int, default=d["pool_size"],
                   help="random subset of the training images to use as the pool")
    r.add_argument("--test-size", type=int, default=d["test_size"])
    r.add_argument("--model", default=d["model"], help="mlp | small_cnn | resnet18_narrow")
    r.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE")
    r.add_argument("--strategies", type=_names, default=d["strategies"],
                   help="comma list (default: %(default)s)")
    r.add_argument("--set", action="append", default=[], metavar="STRATEGY.KEY=VALUE",
                   help="strategy option, e.g. fishermask.pct_top=0.01 (repeatable)")
    r.add_argument("--initial", type=int, default=d["initial"], help="initial labels")
    r.add_argument("--query", type=int, default=d["query"], help="labels queried per round")
    r.add_argument("--rounds", type=int, default=d["rounds"], help="query rounds")
    r.add_argument("--seeds", type=_ints, default=d["seeds"], help="comma list of seeds")
    r.add_argument("--epochs", type=int, default=d["epochs"], help="epochs (max epochs with "
                                                                    "--train-accuracy)")
    r.add_argument("--train-accuracy", type=float, default=d["train_accuracy"],
                   help="train each round until this training accuracy")
    r.add_argument("--optimizer", choices=("adam", "sgd"), default=d["optimizer"])
    r.add_argument("--lr", type=float, default=d["lr"])
    r.add_argument("--batch-size", type=int, default=d["batch_size"])
    r.add_argument("--keep-weights", action="store_true",
                   help="continue training across rounds instead of resetting the weights")
    r.add_argument("--device", default=d["device"])
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
    s.add_argument("--backend", choices=("auto", "native", "torch"), default="auto")
    rep = sub.add_parser("report", help="(re)write the curves, plot and summary of a results "
                                        "folder, also of an unfinished one")
    rep.add_argument("folder")
    sub.add_parser("bench", help="run benchmarks/ with pytest-benchmark (extra arguments go "
                                 "to pytest, e.g. -k select)")
    return p


def _run(args):
    from .loop import default_config, run_experiment
    config = default_config(
        dataset=args.dataset, data_dir=args.data_dir, imbalance=args.imbalance,
        pool_size=args.pool_size, test_size=args.test_size, model=args.model,
        model_options=_options(args.model_option, nested=False), strategies=args.strategies,
        strategy_options=_options(args.set, nested=True), initial=args.initial,
        query=args.query, rounds=args.rounds, seeds=args.seeds, epochs=args.epochs,
        train_accuracy=args.train_accuracy, optimizer=args.optimizer, lr=args.lr,
        batch_size=args.batch_size, reset_weights=not args.keep_weights, device=args.device)
    name = args.name or re.sub(r"[^\w.-]+", "-", f"{args.dataset}-{args.model}" +
                               ("-imbalanced" if args.imbalance else ""))
    out = args.out or os.path.join("results", name)
    run_experiment(config, out, resume=args.resume, progress=not args.no_progress)
    args.folder = out
    return _report(args)


def _report(args):
    from .report import write_report
    paths = write_report(args.folder)
    with open(paths["summary"]) as f:
        print(f.read())
    print("wrote " + ", ".join(paths.values()))
    return 0


def _select(args):
    import torch
    from .select import select_batch
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
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
