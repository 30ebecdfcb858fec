"""`fishermask embed`: a model checkpoint and a data set into an on-disk embedding store, chunk
by chunk and resumable; and the store half of `fishermask select`.

    fishermask embed model.pt --dataset digits --out pool.store            # FisherMask's mask
    fishermask embed model.pt --dataset digits --out pool.store --resume   # after a crash
    fishermask embed model.pt --dataset digits --out f.store --factored    # G ⊗ h̄ kept as factors
    fishermask select pool.store --budget 10 --labeled labeled.txt --out picks.txt

The checkpoint is a `save_checkpoint` file (the model's name, options, class count and
state_dict), or a bare state_dict such as `fishermask run --keep-weights` leaves in
runs/<run>/model-round<r>.pt, described by --model and --model-option as in that run's
config.json. The pool is the training split of --dataset with the data flags of `fishermask
run` (the same flags give the same pool). The store folder also keeps the mask (mask.pt), so a
resumed run neither recomputes step A nor risks another mask.
"""
import os

import torch

from ..nn import ParamMask, masked_grad_embeddings
from ..nn.hooks import WEIGHTINGS
from ..ops import BACKENDS
from ..select import open_store
from ..select.store import MANIFEST
from . import config as schema
from . import data as datasets
from . import strategies
from .training import build_model
from .strategies.base import PoolView

__all__ = ["add_parser", "run", "save_checkpoint", "load_checkpoint", "load_pool"]

CHECKPOINT_FORMAT = "fishermask_ext.checkpoint/1"
DATA_KEYS = ("dataset", "data_dir", "imbalance", "pool_size", "pool_order", "split_seed",
             "model", "model_options", "device")
MASKS = ("fishermask", "bait")      # strategies whose mask `embed` can build
MASK_FILE = "mask.pt"


def save_checkpoint(path, model, name, num_classes, model_options=None):
    """Save `model` (built by nn.get_model(name, **model_options)) for `fishermask embed`."""
    torch.save({"format": CHECKPOINT_FORMAT, "model": name, "num_classes": int(num_classes),
                "model_options": dict(model_options or {}), "state_dict": model.state_dict()},
               path)


def load_checkpoint(path, sample_shape, *, name, num_classes, model_options):
    """The model of checkpoint `path`; `name`, `num_classes` and `model_options` describe a
    bare state_dict (a save_checkpoint file carries its own)."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(saved, dict) and saved.get("format") == CHECKPOINT_FORMAT:
        name, num_classes = saved["model"], saved["num_classes"]
        model_options, state = saved["model_options"], saved["state_dict"]
    elif isinstance(saved, dict) and saved and all(torch.is_tensor(v) for v in saved.values()):
        state = saved
    else:
        raise ValueError(f"{path} is neither a save_checkpoint file nor a state_dict")
    model = build_model(name, sample_shape, num_classes, model_options)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"the state_dict in {path} does not fit model {name!r} with "
                         f"{num_classes} classes and options {model_options} "
                         f"({str(exc).splitlines()[0]}); pass the --model and --model-option "
                         f"of the run that saved it (its config.json)") from None
    return model


def add_parser(subparsers):
    """The `embed` subcommand on the `fishermask` parser's subparsers."""
    p = subparsers.add_parser("embed", help="embed a pool into an on-disk store (resumable)")
    p.add_argument("checkpoint", help="save_checkpoint file, or a bare state_dict (then "
                                      "--model and --model-option say what it is)")
    p.add_argument("--out", required=True, help="the store folder")
    schema.add_arguments(p, DATA_KEYS)
    p.add_argument("--mask", default="fishermask",
                   help="fishermask (step A-B, default) | bait (the last Linear weight) | a "
                        "ParamMask.save file")
    p.add_argument("--pct-top", type=float, default=None, help="fishermask's mask fraction "
                                                               "(default: its own)")
    p.add_argument("--n-samples", type=int, default=None, help="fishermask's step A samples")
    p.add_argument("--seed", type=int, default=0, help="seeds step A's sample")
    p.add_argument("--weighting", choices=WEIGHTINGS, default=None,
                   help="row weights (default: the mask strategy's; none for a mask file)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--chunk-rows", type=int, default=None, help="rows per chunk of a new store")
    p.add_argument("--backend", choices=BACKENDS, default="auto")
    p.add_argument("--factored", action="store_true",
                   help="store the classifier block as its factors G, h̄ (FactoredEmbeddings: "
                        "about C× smaller, the same picks); the mask must hold the whole "
                        "nn.Linear classifier (fishermask's and bait's do)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted store "
                                                         "(of the same kind: dense or --factored)")
    p.add_argument("--no-progress", action="store_true")
    return p


def run(args):
    """`fishermask embed`: returns the exit status (errors raise, main reports them)."""
    opts = schema.default_config(**schema.from_args(args, DATA_KEYS))
    # Open first: a store already there fails now, not after step A.
    store = open_store(args.out, mode="a" if args.resume else "w", chunk_rows=args.chunk_rows)
    pool, train_y, _, test_y = datasets.load(
        opts["dataset"], data_dir=opts["data_dir"], split_seed=opts["split_seed"],
        imbalance=opts["imbalance"], pool_size=opts["pool_size"], pool_order=opts["pool_order"])
    model = load_checkpoint(args.checkpoint, tuple(pool.shape[1:]), name=opts["model"],
                            num_classes=int(max(train_y.max(), test_y.max())) + 1,
                            model_options=opts["model_options"]).to(opts["device"])
    mask, weighting = _mask(args, model, pool, opts["device"])
    if not store.defined:
        _save_mask(mask, os.path.join(args.out, MASK_FILE))
    before = len(store.completed) if store.defined else 0
    masked_grad_embeddings(model, pool, mask, weighting=args.weighting or weighting,
                           batch_size=args.batch_size, device=opts["device"], out=store,
                           backend=args.backend, progress=not args.no_progress,
                           factored=args.factored)
    N, C, D = store.shape
    kind = f" factored (d̄ = {store.d_bar}, D_r = {store.d_rest})" if store.factored else ""
    print(f"{store.path}: {N} x {C} x {D}{kind} {str(store.dtype).replace('torch.', '')}, "
          f"{store.n_chunks - before} of {store.n_chunks} chunks computed now; {mask}")
    return 0


def _mask(args, model, pool, device):
    """(ParamMask, default weighting): the store's own mask.pt on --resume, a mask file, or
    the mask of strategy fishermask / bait on this pool."""
    saved = os.path.join(args.out, MASK_FILE)
    if args.mask not in MASKS:
        return ParamMask.load(args.mask, model), "none"
    extra = {k: v for k, v in (("pct_top", args.pct_top), ("n_samples", args.n_samples))
             if v is not None}
    strategy = strategies.get(args.mask, seed=args.seed, batch_size=args.batch_size,
                              device=device, **extra)
    if args.resume and os.path.isfile(saved):
        return ParamMask.load(saved, model), strategy.weighting
    unlabeled = torch.zeros(len(pool), dtype=torch.bool)
    view = PoolView(model, pool, unlabeled, args.seed, args.batch_size, torch.device(device))
    return strategy.mask(view), strategy.weighting


def _save_mask(mask, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    mask.save(tmp)
    os.replace(tmp, path)      # whole or absent: a resume may load it


def load_pool(path):
    """The EmbeddingStore at `path` (a store folder or its manifest.json), or None when `path`
    is no store (a .npy or .pt file of embeddings: al.pool_files reads those)."""
    if os.path.isfile(os.path.join(path, MANIFEST)) or os.path.basename(path) == MANIFEST:
        return open_store(path)
    return None
