"""Image datasets for the active-learning driver, as normalised (N, C, H, W) float tensors.

`load(name, ...)` returns (train_x [N, C, H, W] float32, train_y [N] int64, test_x, test_y).
Pixels are scaled to [0, 1], then standardised per channel with the mean and standard deviation
of the (final) training images. Names: see `available()`.
"""
import gzip
import os
import pickle
import struct

import numpy as np
import torch

from .._checks import check_choice

__all__ = ["load", "load_for", "num_classes", "available", "parse_imbalance", "apply_imbalance",
           "read_idx", "POOL_ORDERS"]

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"   # Debian's dataset-fashion-mnist
FASHION_MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                       "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
DIGITS_TEST_FRACTION = 0.25   # the digits ship without a test split: hold out a quarter
_STD_FLOOR = 1e-6             # a constant channel (std 0) must not divide by zero


def available():
    """The dataset names `load` accepts."""
    return sorted(_LOADERS) + ["torchvision:<Name> (when torchvision imports)"]


POOL_ORDERS = ("dataset", "class")


def load(name, *, data_dir=None, split_seed=0, imbalance=None, pool_size=None, test_size=None,
         pool_order="dataset"):
    """Load a dataset as (train_x, train_y, test_x, test_y), normalised.

    Args:
        name: "digits" (scikit-learn, offline), "fashion-mnist", "cifar10" or
            "torchvision:<Name>" (e.g. "torchvision:MNIST").
        data_dir: where to look for the files (fashion-mnist also looks in FASHION_MNIST_DIR).
        split_seed: seeds the train/test split where the source has none (digits: 25 % test,
            stratified) and the random subsets below.
        imbalance: per-class count spec such as "0:250,1:5000,2:250" or a dict: keeps only those
            classes in the training pool, at most that many images each, and relabels them
            0..k-1 in class order; the test set keeps all its images of those classes.
        pool_size, test_size: keep a seeded random subset of this many training / test images
            (applied after `imbalance`).
        pool_order: "dataset" keeps the training images in the source's order; "class" sorts
            them by label (stable), the published code's pool, whose first images, its step A
            sample, then hold only the first classes.
    """
    check_choice(pool_order, "pool_order", POOL_ORDERS)
    if name.startswith("torchvision:"):
        arrays = _torchvision(name.split(":", 1)[1], data_dir)
    else:
        arrays = _LOADERS[check_choice(name, "dataset", available())](data_dir, split_seed)
    train_x, train_y, test_x, test_y = arrays
    if imbalance:
        spec = parse_imbalance(imbalance) if isinstance(imbalance, str) else dict(imbalance)
        train_x, train_y, test_x, test_y = apply_imbalance(
            train_x, train_y, test_x, test_y, spec, split_seed)
    rng = np.random.default_rng(split_seed)
    kept = f" in the classes of imbalance {imbalance!r}" if imbalance else ""
    train_x, train_y = _subset(train_x, train_y, pool_size, rng, "pool_size (--pool-size)",
                               f"training images of {name}{kept}")
    test_x, test_y = _subset(test_x, test_y, test_size, rng, "test_size (--test-size)",
                             f"test images of {name}{kept}")
    if pool_order == "class":
        # Last, so the subsets above draw the same images in either order.
        order = np.argsort(train_y, kind="stable")
        train_x, train_y = train_x[order], train_y[order]
    return _normalise(train_x, train_y, test_x, test_y)


def load_for(config):
    """load() of the data keys of an experiment config (al.config): one mapping from a config
    to its data, for `fishermask run` and `fishermask embed` (the same flags, the same pool)."""
    return load(config["dataset"], data_dir=config["data_dir"], split_seed=config["split_seed"],
                imbalance=config["imbalance"], pool_size=config["pool_size"],
                test_size=config["test_size"], pool_order=config["pool_order"])


def num_classes(train_y, test_y):
    """The number of classes of a loaded data set, whose labels are 0..k-1 (imbalance
    relabels the classes it keeps)."""
    return int(max(train_y.max(), test_y.max())) + 1


def parse_imbalance(spec):
    """"0:250,1:5000" -> {0: 250, 1: 5000}, with an error naming the bad part."""
    counts = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        try:
            cls, count = (int(v) for v in part.split(":"))
        except ValueError:
            raise ValueError(f"bad imbalance entry {part!r} in {spec!r}; expected "
                             f"'class:count' pairs such as '0:250,1:5000'") from None
        if cls in counts or count < 1 or cls < 0:
            raise ValueError(f"bad imbalance entry {part!r} in {spec!r}: classes must be "
                             f">= 0 and appear once, counts must be >= 1")
        counts[cls] = count
    if not counts:
        raise ValueError(f"empty imbalance spec {spec!r}; expected e.g. '0:250,1:5000'")
    return counts


def apply_imbalance(train_x, train_y, test_x, test_y, counts, seed=0):
    """Keep the classes of `counts` ({class: max count}); relabel them 0..k-1 in class order."""
    present = set(np.unique(train_y).tolist())
    missing = sorted(set(counts) - present)
    if missing:
        raise ValueError(f"imbalance spec names classes {missing} that the data does not have "
                         f"(classes present: {sorted(present)})")
    rng = np.random.default_rng(seed)
    keep = np.concatenate([rng.permutation(np.flatnonzero(train_y == c))[:n]
                           for c, n in sorted(counts.items())])
    keep.sort()
    relabel = np.full(max(present | set(np.unique(test_y).tolist())) + 1, -1, dtype=np.int64)
    relabel[sorted(counts)] = np.arange(len(counts))
    test_keep = relabel[test_y] >= 0
    return (train_x[keep], relabel[train_y[keep]], test_x[test_keep], relabel[test_y[test_keep]])


def read_idx(path):
    """Read an IDX file of unsigned bytes (MNIST format), gzipped or not, as a numpy array."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes "
                         f"(magic {raw[:4].hex() or 'missing'}, expected 000008xx)")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path} holds {data.size} values but its header says {dims}")
    return data.reshape(dims)


def _digits(data_dir, split_seed):
    # Imported here: only this data set needs scikit-learn, which takes a second to import.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    x, y = load_digits(return_X_y=True)
    x = (x.reshape(-1, 1, 8, 8) / 16.0).astype(np.float32)      # pixels count 0..16
    tr_x, te_x, tr_y, te_y = train_test_split(x, y, test_size=DIGITS_TEST_FRACTION,
                                              random_state=split_seed,
                                              stratify=y)
    return tr_x, tr_y.astype(np.int64), te_x, te_y.astype(np.int64)


def _fashion_mnist(data_dir, split_seed):
    # A data_dir given is the only place looked at: falling back to the system copy would run
    # other data than the folder named (and its whole 60,000-image pool).
    dirs = [data_dir, os.path.join(data_dir, "fashion-mnist")] if data_dir else [FASHION_MNIST_DIR]
    for d in dirs:
        if all(os.path.isfile(os.path.join(d, f)) for f in FASHION_MNIST_FILES):
            tr_x, tr_y, te_x, te_y = (read_idx(os.path.join(d, f)) for f in FASHION_MNIST_FILES)
            return (tr_x[:, None] / np.float32(255), tr_y.astype(np.int64),
                    te_x[:, None] / np.float32(255), te_y.astype(np.int64))
    if data_dir:
        raise FileNotFoundError(
            f"--data-dir {data_dir} does not hold Fashion-MNIST: it should contain "
            f"{', '.join(FASHION_MNIST_FILES)} (directly or in a fashion-mnist subfolder); "
            f"pass the folder that holds them, or leave --data-dir out to use "
            f"{FASHION_MNIST_DIR}")
    raise FileNotFoundError(
        f"Fashion-MNIST not found: looked for {', '.join(FASHION_MNIST_FILES)} in "
        f"{FASHION_MNIST_DIR}. Install Debian's package (apt-get install "
        f"dataset-fashion-mnist) or pass --data-dir with those four files")


def _cifar10(data_dir, split_seed):
    dirs = [os.path.join(data_dir, "cifar-10-batches-py"), data_dir] if data_dir else []
    for d in dirs:
        if all(os.path.isfile(os.path.join(d, f)) for f in CIFAR10_FILES):
            parts = [_cifar_batch(os.path.join(d, f)) for f in CIFAR10_FILES]
            tr_x = np.concatenate([p[0] for p in parts[:-1]])
            tr_y = np.concatenate([p[1] for p in parts[:-1]])
            return tr_x / np.float32(255), tr_y, parts[-1][0] / np.float32(255), parts[-1][1]
    raise FileNotFoundError(
        f"CIFAR-10 not found: looked for {', '.join(CIFAR10_FILES)} (the python version, "
        f"cifar-10-python.tar.gz, unpacked) in {', '.join(dirs) or 'no directory'}; "
        f"pass --data-dir with the folder that holds cifar-10-batches-py")


def _cifar_batch(path):
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    x = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    return x, np.asarray(batch[b"labels"], dtype=np.int64)


def _torchvision(name, data_dir):
    try:
        import torchvision
    except Exception as exc:   # not installed, or installed without its native ops
        # ImportError: the CLI reports it as one line (a missing optional dependency).
        raise ImportError(f"dataset 'torchvision:{name}' needs torchvision, which does not "
                          f"import here ({type(exc).__name__}: {exc}); install the "
                          f"torchvision built for torch {torch.__version__} (keeping that "
                          f"torch), or use digits, fashion-mnist or cifar10") from None
    cls = getattr(torchvision.datasets, name, None)
    if cls is None:
        raise ValueError(f"torchvision.datasets has no dataset {name!r}")
    root = data_dir or "./data"
    out = []
    for train in (True, False):
        ds = cls(root, train=train, download=True)
        items = [ds[i] for i in range(len(ds))]
        imgs = np.stack([np.asarray(img) for img, _ in items])
        imgs = imgs[:, None] if imgs.ndim == 3 else imgs.transpose(0, 3, 1, 2)
        out += [imgs / np.float32(255), np.asarray([t for _, t in items], dtype=np.int64)]
    return tuple(out)


def _subset(x, y, n, rng, name, what):
    """A seeded random subset of n of the points; a size above what there is is an error (it
    would run on all of them while config.json records the size asked for)."""
    if n is not None and n > len(y):
        raise ValueError(f"{name} is {n}, but there are only {len(y):,} {what}; pass at most "
                         f"{len(y)}, or leave it out to use them all")
    if n is None or n == len(y):
        return x, y
    keep = np.sort(rng.permutation(len(y))[:n])
    return x[keep], y[keep]


def _normalise(train_x, train_y, test_x, test_y):
    tr = torch.as_tensor(np.ascontiguousarray(train_x), dtype=torch.float32)
    te = torch.as_tensor(np.ascontiguousarray(test_x), dtype=torch.float32)
    mean = tr.mean(dim=(0, 2, 3), keepdim=True)
    std = tr.std(dim=(0, 2, 3), keepdim=True).clamp_min(_STD_FLOOR)
    return ((tr - mean) / std, torch.as_tensor(train_y, dtype=torch.long),
            (te - mean) / std, torch.as_tensor(test_y, dtype=torch.long))


_LOADERS = {"digits": _digits, "fashion-mnist": _fashion_mnist, "cifar10": _cifar10}
