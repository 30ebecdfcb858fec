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
from ..store import open_store
from ..store import MANIFEST
from . import config as schema
from . import data as datasets
from .. import strategies
from .io import atomic_path, read_json, write_json
from .training import build_model
from ..strategies.base import PoolView

__all__ = ["add_parser", "run", "save_checkpoint", "load_checkpoint", "load_pool"]

CHECKPOINT_FORMAT = "fishermask_ext.checkpoint/1"
DATA_KEYS = ("dataset", "data_dir", "imbalance", "pool_size", "pool_order", "split_seed",
             "model", "model_options", "device")
MASKS = ("fishermask", "bait")      # strategies whose mask `embed` can build
MASK_FILE = "mask.pt"
# The mask flags a store was started with: a resume that contradicts them is refused.
OPTIONS_FILE = "embed.json"
MASK_FLAGS = {"mask": "--mask", "pct_top": "--pct-top", "n_samples": "--n-samples",
              "seed": "--seed", "weighting": "--weighting"}
NPY_MAGIC = b"\x93NUMPY"


def save_checkpoint(path, model, name, num_classes, model_options=None):
    """Save `model` (built by nn.get_model(name, **model_options)) for `fishermask embed`."""
    torch.save({"format": CHECKPOINT_FORMAT, "model": name, "num_classes": int(num_classes),
                "model_options": dict(model_options or {}), "state_dict": model.state_dict()},
               path)


def load_checkpoint(path, sample_shape, *, name, num_classes, model_options):
    """The model of checkpoint `path`; `name`, `num_classes` and `model_options` describe a
    bare state_dict (a save_checkpoint file carries its own)."""
    saved = _load(path)
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


def _load(path):
    """torch.load of a checkpoint, or a ValueError saying what the file is instead (torch's
    unpickler fails on other files with messages such as `KeyError: 101`)."""
    with open(path, "rb") as f:               # a missing file: FileNotFoundError, as it is
        head = f.read(len(NPY_MAGIC))
    if head == NPY_MAGIC:
        raise ValueError(f"{path} is a numpy array (.npy), not a model checkpoint; `fishermask "
                         f"embed` takes a save_checkpoint file or a state_dict (embeddings "
                         f"saved as .npy go to `fishermask select`)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:    # noqa: BLE001 - the unpickler raises anything on a foreign file
        raise ValueError(f"{path} is not a model checkpoint torch can load "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                         f"); pass a save_checkpoint file or a state_dict saved with torch.save"
                         ) from None


def add_parser(subparsers):
    """The `embed` subcommand on the `fishermask` parser's subparsers."""
    p = subparsers.add_parser("embed", help="embed a pool into an on-disk store (resumable)")
    p.add_argument("checkpoint", help="save_checkpoint file, or a bare state_dict (then "
                                      "--model and --model-option say what it is)")
    p.add_argument("--out", required=True, help="the store folder")
    schema.add_arguments(p, DATA_KEYS)
    # Mask flags default to None, "not given": a resume compares only those given.
    p.add_argument("--mask", default=None,
                   help="fishermask (step A-B, the default) | bait (the last Linear weight) | a "
                        "ParamMask.save file")
    p.add_argument("--pct-top", type=float, default=None, help="fishermask's mask fraction "
                                                               "(default: its own)")
    p.add_argument("--n-samples", type=int, default=None,
                   help="fishermask's step A samples (default: its own)")
    p.add_argument("--seed", type=int, default=None, help="seeds step A's sample (default: 0)")
    p.add_argument("--weighting", choices=WEIGHTINGS, default=None,
                   help="row weights (default: the mask strategy's; none for a mask file)")
    p.add_argument("--batch-size", type=int, default=256, help="images per batch (default: 256)")
    p.add_argument("--chunk-rows", type=int, default=None,
                   help="rows per chunk of a new store (default: about 32 MiB of rows)")
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="native kernels, the PyTorch twins (torch), or auto: native where "
                        "built (default: auto)")
    p.add_argument("--factored", action="store_true",
                   help="store the classifier block as its factors G, h̄ (FactoredEmbeddings: "
                        "about C× smaller, the same picks); the mask must hold the whole "
                        "nn.Linear classifier (fishermask's and bait's do)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted store "
                                                         "(of the same kind: dense or --factored)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run(args):
    """`fishermask embed`: returns the exit status (errors raise, main reports them)."""
    opts = schema.default_config(**schema.from_args(args, DATA_KEYS))
    # Open first: a store already there fails now, not after step A.
    store = open_store(args.out, mode="a" if args.resume else "w", chunk_rows=args.chunk_rows)
    pool, train_y, _, test_y = datasets.load_for(opts)
    model = load_checkpoint(args.checkpoint, tuple(pool.shape[1:]), name=opts["model"],
                            num_classes=datasets.num_classes(train_y, test_y),
                            model_options=opts["model_options"]).to(opts["device"])
    mask, weighting = _mask(args, model, pool, opts["device"])
    weighting = args.weighting or weighting
    if not store.defined:
        _save_mask(mask, os.path.join(args.out, MASK_FILE))
        write_json(os.path.join(args.out, OPTIONS_FILE), _started(args, weighting))
    before = len(store.completed) if store.defined else 0
    masked_grad_embeddings(model, pool, mask, weighting=weighting, batch_size=args.batch_size,
                           device=opts["device"], out=store, backend=args.backend,
                           progress=not args.no_progress, factored=args.factored)
    N, C, D = store.shape
    kind = f" factored (d̄ = {store.d_bar}, D_r = {store.d_rest})" if store.factored else ""
    print(f"{store.path}: {N} x {C} x {D}{kind} {str(store.dtype).replace('torch.', '')}, "
          f"{store.n_chunks - before} of {store.n_chunks} chunks computed now; {mask}")
    return 0


def _started(args, weighting):
    """The mask options of a new store as embed.json keeps them: every flag resolved (None:
    the strategy's own default)."""
    return dict(mask=_mask_name(args), pct_top=args.pct_top, n_samples=args.n_samples,
                seed=args.seed or 0, weighting=weighting)


def _mask_name(args):
    """fishermask, bait, or "file" (a mask file is compared by content, not by path)."""
    name = args.mask or "fishermask"
    return name if name in MASKS else "file"


def _check_resume(args, model, saved):
    """Refuse to mix: a mask flag given on --resume that contradicts the options the store was
    started with (embed.json), or a mask file other than its mask.pt; returns the store's
    weighting (None for a store from before embed.json). --weighting is left to the store's
    own fingerprint check."""
    path = os.path.join(args.out, OPTIONS_FILE)
    started = read_json(path) if os.path.isfile(path) else {}
    differ = []
    for key in ("mask", "pct_top", "n_samples", "seed"):
        given = _mask_name(args) if key == "mask" and args.mask else getattr(args, key)
        if given is not None and key in started and started[key] != given:
            was = "the default" if started[key] is None else started[key]
            differ.append(f"{MASK_FLAGS[key]} {getattr(args, key)} (the store: {was})")
    if _mask_name(args) == "file" and ParamMask.load(args.mask, model) != saved:
        differ.append(f"--mask {args.mask} (another mask than the store's {MASK_FILE})")
    if differ:
        raise ValueError(f"refuse to mix: the store at {args.out} was started with other mask "
                         f"options; given now: {'; '.join(differ)}. Resume without those flags "
                         f"(the store keeps its own), or embed into another --out")
    return started.get("weighting")


def _mask(args, model, pool, device):
    """(ParamMask, default weighting): the store's own mask.pt on --resume, a mask file, or
    the mask of strategy fishermask / bait on this pool."""
    saved = os.path.join(args.out, MASK_FILE)
    if args.resume and os.path.isfile(saved):
        mask = ParamMask.load(saved, model)
        weighting = _check_resume(args, model, mask)
        if weighting is None:                    # an older store: its strategy's, as before
            weighting = "none" if _mask_name(args) == "file" else strategies.get(
                args.mask or "fishermask").weighting
        return mask, weighting
    if _mask_name(args) == "file":
        return ParamMask.load(args.mask, model), "none"
    extra = {k: v for k, v in (("pct_top", args.pct_top), ("n_samples", args.n_samples))
             if v is not None}
    strategy = strategies.get(args.mask or "fishermask", seed=args.seed or 0,
                              batch_size=args.batch_size, device=device, **extra)
    unlabeled = torch.zeros(len(pool), dtype=torch.bool)
    view = PoolView(model, pool, unlabeled, args.seed or 0, args.batch_size, strategy.device)
    return strategy.mask(view), strategy.weighting


def _save_mask(mask, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with atomic_path(path) as tmp:      # whole or absent: a resume may load it
        mask.save(tmp)


def load_pool(path):
    """The EmbeddingStore at `path` (a store folder or its manifest.json), or None when `path`
    is no store (a .npy or .pt file of embeddings: al.pool_files reads those)."""
    if os.path.isfile(os.path.join(path, MANIFEST)) or os.path.basename(path) == MANIFEST:
        return open_store(path)
    return None
