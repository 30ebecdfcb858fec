"""Files of `fishermask select`: embeddings in (.npy or torch .pt), picks out (text, .pt, .npy).

    unlabeled, labeled = read_pool("emb.npy")          # a numpy memmap [N, C, D], None
    mask, embeddings = read_labeled("labeled.txt", N)  # [N] bool, None (or None, [n_L, C, D])
    check_out("picks.txt", gains=True)                 # before any work: a clear error or None
    write_picks("picks.txt", picks, gains)

Files are told apart by their first bytes, not their names: a .npy file starts with
b"\\x93NUMPY", a torch.save file is a zip archive (b"PK\\x03\\x04"), so a misnamed file is still
read, and anything else gets one line naming the file and the formats that are read.
"""
import os

import numpy as np
import torch

from .._files import atomic_path
from ..store.factored import FactoredEmbeddings

__all__ = ["read_array", "read_pool", "read_labeled", "check_out", "write_picks"]

NPY_MAGIC, ZIP_MAGIC = b"\x93NUMPY", b"PK\x03\x04"
FORMATS = ("a .npy file (numpy.save) of an array [N, C, D], or a torch.save file (.pt) of a "
           "tensor [N, C, D] or FactoredEmbeddings, or a dict with 'unlabeled' [N, C, D] and "
           "optional 'labeled' [n_L, C, D] (tensors or FactoredEmbeddings)")


def read_array(path, what):
    """The array or tensor saved at `path` (.npy memory-mapped copy-on-write: nothing is
    loaded until selection reads it, and the file is never written), or a torch.save object;
    `what` names it in errors."""
    if os.path.isdir(path):
        # An embedding store is a folder; reading one belongs to the store (issue 10).
        raise ValueError(f"{what} {path} is a folder; pass {FORMATS}")
    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError as exc:
        raise FileNotFoundError(f"{what} {path}: cannot read it ({exc.strerror})") from None
    if head.startswith(NPY_MAGIC):
        try:
            # "c", not "r": torch.from_numpy warns about (and cannot mark) read-only arrays.
            return np.load(path, mmap_mode="c", allow_pickle=False)
        except ValueError as exc:        # object arrays, truncated headers
            raise ValueError(f"{what} {path} is a .npy file numpy cannot map ({exc}); save a "
                             f"float32 or float64 array with numpy.save") from None
    if head.startswith(ZIP_MAGIC):
        try:    # FactoredEmbeddings is the one class the weights-only unpickler may build here
            with torch.serialization.safe_globals([FactoredEmbeddings]):
                saved = torch.load(path, weights_only=True, map_location="cpu")
        except Exception as exc:         # noqa: BLE001 - torch raises several kinds here
            raise ValueError(f"{what} {path} is not a torch.save file torch can read "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0]}); pass "
                             f"{FORMATS}") from None
        return _checked(saved)
    raise ValueError(f"{what} {path} is neither a .npy file nor a torch.save file (it starts "
                     f"with {head!r}); pass {FORMATS}")


def _checked(saved):
    """A torch.load result with every FactoredEmbeddings in it (at the top or a dict's values)
    rebuilt through its constructor: unpickling sets the factors without checking them."""
    def rebuild(v):
        if isinstance(v, FactoredEmbeddings):
            return FactoredEmbeddings(v.G, v.H, v.R, columns=v.columns)
        return v
    return {k: rebuild(v) for k, v in saved.items()} if isinstance(saved, dict) else rebuild(saved)


def read_pool(path):
    """(unlabeled, labeled or None) from an embeddings file (see FORMATS)."""
    saved = read_array(path, "embeddings")
    if isinstance(saved, dict) and "unlabeled" in saved:
        extra = sorted(set(saved) - {"unlabeled", "labeled"})
        if extra:
            raise ValueError(f"embeddings {path} holds keys {extra} besides 'unlabeled' and "
                             f"'labeled'; save only those two")
        return saved["unlabeled"], saved.get("labeled")
    if isinstance(saved, (torch.Tensor, np.ndarray, FactoredEmbeddings)):
        return saved, None
    raise ValueError(f"embeddings {path} holds a {type(saved).__name__}; pass {FORMATS}")


def read_labeled(path, N):
    """(mask, embeddings) from a --labeled file, one of them None: pool positions (a text file
    of indices, one per line as --out writes them; or an integer [k] array/tensor), an [N] bool
    mask (True = labeled), or the labeled points' own embeddings [n_L, C, D] (float)."""
    try:
        given = read_array(path, "--labeled")
    except ValueError:
        if not os.path.isfile(path):
            raise
        with open(path) as f:              # a text file of positions (first column)
            try:
                given = np.array([int(line.split()[0]) for line in f if line.strip()],
                                 dtype=np.int64)
            except (ValueError, UnicodeDecodeError):
                raise ValueError(f"--labeled {path} is not a text file of pool positions (one "
                                 f"integer per line), nor {FORMATS}") from None
    if isinstance(given, FactoredEmbeddings):
        return None, given
    given = torch.as_tensor(np.asarray(given) if isinstance(given, np.ndarray) else given)
    if given.is_floating_point() and given.dim() == 3:
        return None, given
    if given.dtype == torch.bool:
        if tuple(given.shape) != (N,):
            raise ValueError(f"--labeled {path}: a bool mask must have shape ({N},), the "
                             f"pool's N, got {tuple(given.shape)}")
        return given, None
    if given.is_floating_point() or given.is_complex() or given.dim() != 1:
        raise ValueError(f"--labeled {path} must hold integer pool positions, an [N] bool mask "
                         f"or labeled embeddings [n_L, C, D], got {given.dtype} "
                         f"{tuple(given.shape)}")
    if len(given) and (int(given.min()) < 0 or int(given.max()) >= N):
        raise ValueError(f"--labeled {path}: positions must be in 0..{N - 1} (the pool has {N} "
                         f"rows), got {int(given.min())}..{int(given.max())}")
    mask = torch.zeros(N, dtype=torch.bool)
    mask[given] = True
    return mask, None


def _kind(path):
    return {".pt": "pt", ".npy": "npy"}.get(os.path.splitext(path)[1].lower(), "text")


def check_out(path, gains=False):
    """Raise before any selection runs unless the picks can be written to `path`."""
    if os.path.isdir(path):
        raise IsADirectoryError(f"--out {path} is a folder; pass a file name (.txt, .pt, .npy)")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"--out {path}: folder {folder} does not exist; create it or "
                                f"pass another path")
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise PermissionError(f"--out {path}: not writable here; pass a path you can write")
    if gains and _kind(path) == "npy":
        raise ValueError(f"--gains with --out {path}: a .npy file holds one array; write the "
                         f"picks and gains to a .txt or .pt file")


def write_picks(path, picks, gains=None):
    """Write the picks (and their gains): text lines 'index' or 'index gain'; .pt a tensor (or
    a dict of 'picks' and 'gains'); .npy an int64 array. Written whole, then renamed (io)."""
    picks = torch.as_tensor(picks)
    kind = _kind(path)
    with atomic_path(path) as tmp:
        if kind == "pt":
            gains_t = None if gains is None else torch.as_tensor(np.asarray(gains))
            torch.save(picks if gains is None else {"picks": picks, "gains": gains_t}, tmp)
        elif kind == "npy":
            with open(tmp, "wb") as f:
                np.save(f, picks.numpy())
        elif gains is None:
            with open(tmp, "w") as f:
                f.write("".join(f"{i}\n" for i in picks.tolist()))
        else:
            with open(tmp, "w") as f:
                f.write("".join(f"{i} {g!r}\n" for i, g in zip(picks.tolist(),
                                                               np.asarray(gains).tolist())))
