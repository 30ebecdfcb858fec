"""The `fishermask` command: run an active-learning experiment, select a batch, benchmark.

    fishermask run                      # small digits experiment into ./results/digits-mlp/
    fishermask run --dataset fashion-mnist --pool-size 3000 --model small_cnn --seeds 0,1,2
    fishermask report results/digits-mlp
    fishermask embed model.pt --dataset digits --out pool.store [--resume]
    fishermask select emb.npy --budget 10 --out picks.txt
    fishermask select pool.store --budget 10 --labeled labeled.txt --out picks.txt
    fishermask bench --shape 20000,10,1402 --budget 20     # native against the twin, timed
    fishermask info                     # versions, native kernels, CPU ISA, CUDA archs
    fishermask --version

One function pair per subcommand: `_<name>_parser(sub)` adds its flags, `_<name>(args)` runs
it. Bad input is one line on stderr naming the input and the fix, exit status 2, and nothing
written.
"""
import argparse
import difflib
import os
import re
import shlex
import sys

from .. import bench, info
from .._version import __version__
from ..ops import BACKENDS
from . import config as schema
from . import embed_cmd
from . import presets

__all__ = ["main"]

# What a subcommand may raise for bad input (a one-line message, status 2): anything else is a
# bug and keeps its traceback. ImportError: an optional dependency (torchvision) is missing.
USER_ERRORS = (ValueError, TypeError, OSError, ImportError)


def _run_parser(sub):
    r = sub.add_parser("run", help="run an active-learning experiment and write its report")
    schema.add_arguments(r)
    presets.add_arguments(r)     # --preset, --scale
    r.add_argument("--out", default=None, help="results folder (default ./results/<name>)")
    r.add_argument("--name", default=None, help="default: <dataset>-<model>[-imbalanced]")
    r.add_argument("--resume", action="store_true", help="continue an interrupted experiment")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")


def _run(args):
    from .launch import results_folder, torchrun_rank
    from .loop import run_experiment       # here: `fishermask info` needs no driver
    presets.apply(args)          # the preset's values where no flag was given
    config = schema.default_config(**schema.from_args(args))
    name = args.name or re.sub(r"[^\w.-]+", "-", f"{args.dataset}-{args.model}" +
                               ("-imbalanced" if args.imbalance else ""))
    out = args.out = args.out or os.path.join("results", name)    # args.out: for Ctrl-C
    rank = torchrun_rank(config["device"])       # None outside torchrun (al/launch.py)
    with results_folder(out, rank, args.resume) as folder:
        run_experiment(config, folder, resume=args.resume,
                       progress=not args.no_progress and rank in (None, 0))
    if rank is not None:       # gloo's threads torn down at exit without this can abort
        import torch.distributed as dist
        dist.destroy_process_group()
    if rank not in (None, 0):
        return 0                                 # rank 0 reports
    args.folder = out
    return _report(args)


def _report_parser(sub):
    rep = sub.add_parser("report", help="(re)write the curves, plot and summary of a results "
                                        "folder, also of an unfinished one")
    rep.add_argument("folder", help="a results folder of `fishermask run` (it holds config.json "
                                    "and runs/)")


def _report(args):
    from .report import write_report
    paths = write_report(args.folder)
    with open(paths["summary"]) as f:
        print(f.read())
    for path, reason in paths.pop("skipped", {}).items():
        print(f"skipped {path}: {reason}", file=sys.stderr)
    print("wrote " + ", ".join(paths.values()))
    return 0


def _select_parser(sub):
    s = sub.add_parser("select", help="pick a batch from saved embeddings (select_batch)")
    s.add_argument("embeddings", help="a .npy file [N, C, D] of the pool, a .pt file (a tensor "
                                      "[N, C, D] or FactoredEmbeddings, or a dict with "
                                      "'unlabeled' and optional 'labeled' [n_L, C, D]), or an "
                                      "embedding store folder, dense or factored (fishermask "
                                      "embed)")
    s.add_argument("--budget", type=int, required=True, help="K, the number of points to pick")
    s.add_argument("--out", required=True, help="picks file: .pt (a tensor), .npy, else text "
                                                "(one index per line)")
    s.add_argument("--labeled", default=None,
                   help="the labeled points: their pool positions (a text file, one index per "
                        "line as --out writes them, or a .npy/.pt integer array), an [N] bool "
                        "mask, or their own embeddings [n_L, C, D] (.npy/.pt)")
    s.add_argument("--labeled-fisher", default=None,
                   help=".npy/.pt file [D, D]: the labeled points' Fisher F_L (with --n-labeled)"
                        " when only it was kept")
    s.add_argument("--n-labeled", type=int, default=None, help="n_L for --labeled-fisher")
    s.add_argument("--lamb", type=float, default=1.0, help="the ridge λ > 0 (default 1)")
    s.add_argument("--backward-steps", type=int, default=0,
                   help="pick (b+1)·K forward, prune back to K (default 0)")
    s.add_argument("--parity", action="store_true",
                   help="round scores to float32 before each argmax, as the reference code")
    s.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="native kernels, the PyTorch twins (torch), or auto: native where "
                        "built (default: auto)")
    s.add_argument("--gains", action="store_true",
                   help="also write each pick's trace-ratio decrease (text: 'index gain')")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")


def _select(args):
    from ..select import select_batch, select_from_pool
    from . import pool_files
    pool_files.check_out(args.out, gains=args.gains)        # before any work
    store = embed_cmd.load_pool(args.embeddings)             # None: not a store folder
    pool, labeled = (store, None) if store is not None else pool_files.read_pool(args.embeddings)
    mask = None
    if args.labeled:
        if labeled is not None:
            raise ValueError(f"{args.embeddings} holds 'labeled' already; drop --labeled")
        mask, labeled = pool_files.read_labeled(args.labeled, pool.shape[0])
    # labeled_fisher with n_labeled, and not with labeled embeddings: select_batch's checks.
    fisher = (None if args.labeled_fisher is None else
              _tensor(pool_files.read_array(args.labeled_fisher, "--labeled-fisher")))
    opts = dict(labeled_fisher=fisher, n_labeled=args.n_labeled, lamb=args.lamb,
                backward_steps=args.backward_steps, backend=args.backend, parity=args.parity,
                progress=not args.no_progress, return_gains=True)
    try:
        if mask is not None:      # positions into the pool (select_from_pool reads it in place)
            picks, gains = select_from_pool(pool, args.budget, mask, **opts)
        else:
            picks, gains = select_batch(pool, args.budget, labeled=labeled, **opts)
    except (TypeError, ValueError) as exc:   # the library's checks, said in the command's words
        raise type(exc)(_as_flags(str(exc))) from exc
    pool_files.write_picks(args.out, picks, gains if args.gains else None)
    print(f"picked {len(picks)} of {pool.shape[0]} points; wrote {args.out}")
    return 0


# The library's argument names that are flags of `fishermask select` (names with an underscore
# cannot be prose; `labeled` stays, it is also the embeddings' word).
_FLAGS = {"labeled_fisher": "--labeled-fisher", "n_labeled": "--n-labeled",
          "backward_steps": "--backward-steps", "lamb": "--lamb"}


def _as_flags(message):
    return re.sub(r"\b(" + "|".join(_FLAGS) + r")\b", lambda m: _FLAGS[m.group(1)], message)


def _tensor(a):
    """A [D, D] Fisher from a file as a tensor (select_batch takes tensors for it)."""
    import numpy as np
    import torch
    return torch.from_numpy(np.array(a)) if isinstance(a, np.ndarray) else a


COMMANDS = {"run": (_run_parser, _run), "report": (_report_parser, _report),
            "select": (_select_parser, _select), "embed": (embed_cmd.add_parser, embed_cmd.run),
            "bench": (bench.add_parser, bench.run), "info": (info.add_parser, info.run)}


def _parser():
    """(the `fishermask` parser, {command: its subparser})."""
    p = argparse.ArgumentParser(prog="fishermask", description=__doc__.split("\n")[0])
    p.add_argument("--version", action="version", version=f"fishermask {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for add, _ in COMMANDS.values():
        add(sub)
    return p, sub.choices


def _unrecognized(parser, extra):
    """argparse's message for unknown arguments, with the closest flag of `parser` for each
    (argparse suggests them itself only from Python 3.14)."""
    flags = [f for action in parser._actions for f in action.option_strings]
    hints = []
    for arg in extra:
        close = difflib.get_close_matches(arg.split("=")[0], flags, n=1) if arg[:1] == "-" else []
        hints.append(f"{arg} (did you mean {close[0]}?)" if close else arg)
    return f"unrecognized arguments: {' '.join(hints)}"


def _interrupted(args, argv):
    """What a Ctrl-C leaves behind, and the command that continues from there."""
    again = shlex.join(["fishermask", *argv] + ([] if "--resume" in argv else ["--resume"]))
    if args.command == "run":
        from .loop import completed_runs
        from .io import read_json
        out = getattr(args, "out", None)           # None: stopped before it was known
        states = completed_runs(out) if out else []
        rounds = sum(len(read_json(p)["history"]) for p in states)
        if not rounds:
            return "no round was completed, nothing saved; run the command again"
        return (f"{rounds} completed round(s) of {len(states)} run(s) are saved in "
                f"{args.out} (an interrupted round is redone); continue with: {again}")
    if args.command == "embed":
        return (f"the chunks completed so far are saved in {args.out}; continue with: {again}")
    # report writes each file atomically, select its picks at the end: nothing is half-written
    return "no file was left half-written; run the command again"


def main(argv=None):
    """Entry point of the `fishermask` console script; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser, commands = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        commands[args.command].error(_unrecognized(commands[args.command], extra))
    try:
        return COMMANDS[args.command][1](args)
    except USER_ERRORS as exc:
        print(f"fishermask {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # 130 = 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C.
        print(f"\nfishermask {args.command}: interrupted (Ctrl-C); {_interrupted(args, argv)}",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
