"""The parameter mask M of docs/ALGORITHM.md: D (parameter tensor, flat position) pairs.

Columns are ordered by `model.named_parameters()` order, then by ascending flat (row-major)
position inside each tensor: the column order of the embeddings X [N, C, D].
"""
import difflib
import hashlib

import torch

from .._checks import check_int

__all__ = ["ParamMask", "random_mask", "split_flat"]

_FORMAT = "fishermask_ext.ParamMask/1"


class ParamMask:
    """A set of masked parameter entries of `model`: `{param_name: flat positions}`.

    Positions (any integer tensor, list or array) are sorted and deduplicated; names with no
    position are dropped. `len(mask)` is D, the number of masked entries.
    """

    def __init__(self, model, positions):
        params = dict(model.named_parameters())
        for name in positions:
            if name not in params:
                raise KeyError(_unknown_name(name, params))
        self._shapes, self._positions = {}, {}
        for name, p in params.items():           # named_parameters order fixes the columns
            if name in positions:
                pos = _checked_positions(name, positions[name], p.numel())
                if pos.numel():
                    self._shapes[name], self._positions[name] = tuple(p.shape), pos
        self._slices, start = {}, 0
        for name, pos in self._positions.items():
            self._slices[name] = slice(start, start + pos.numel())
            start += pos.numel()
        self._len = start

    def __len__(self):
        return self._len

    def __eq__(self, other):
        return (isinstance(other, ParamMask) and self._shapes == other._shapes
                and all(torch.equal(p, other._positions[n]) for n, p in self._positions.items()))

    def __repr__(self):
        parts = ", ".join(f"{n}: {p.numel()}" for n, p in self._positions.items())
        return f"ParamMask(D={len(self)}; {parts})"

    @property
    def names(self):
        """Masked parameter names, in column order."""
        return tuple(self._positions)

    def positions(self, name):
        """Sorted flat positions [m] (int64, CPU) masked in parameter `name`."""
        return self._positions[name]

    def columns(self, name):
        """The slice of the D columns that holds parameter `name`."""
        return self._slices[name]

    def check(self, model):
        """Raise ValueError unless every masked name is a parameter of `model` of the shape the
        mask was built for."""
        _check_shapes(self._shapes, model)

    def gather(self, tensors):
        """The masked entries [..., D] of `{name: tensor [..., *param_shape]}` (the leading dims
        shared by all tensors), in column order."""
        cols = []
        for name, shape in self._shapes.items():
            t = tensors[name]
            t = t.reshape(*t.shape[:t.dim() - len(shape)], -1)
            cols.append(t.index_select(-1, self._positions[name].to(t.device)))
        return torch.cat(cols, dim=-1)

    def fingerprint(self):
        """A stable hash (hex SHA-256) of the mask: its names, shapes and positions, in column
        order. Equal masks have equal fingerprints, in every process and on every machine."""
        h = hashlib.sha256(_FORMAT.encode())
        for name, pos in self._positions.items():
            h.update(repr((name, self._shapes[name], pos.numel())).encode())
            h.update(pos.numpy().astype("<i8").tobytes())     # int64 little-endian, fixed
        return h.hexdigest()

    def save(self, path):
        """Write the mask to `path` (torch.save of plain tensors, lists and strings)."""
        torch.save({"format": _FORMAT, "positions": self._positions,
                    "shapes": {n: list(s) for n, s in self._shapes.items()}}, path)

    @classmethod
    def load(cls, path, model):
        """Read a mask written by `save` and check that it fits `model`."""
        state = torch.load(path, weights_only=True)
        if not isinstance(state, dict) or state.get("format") != _FORMAT:
            raise ValueError(f"{path} is not a ParamMask file (written by ParamMask.save)")
        _check_shapes({n: tuple(s) for n, s in state["shapes"].items()}, model)
        return cls(model, state["positions"])


def _check_shapes(shapes, model):
    params = dict(model.named_parameters())
    for name, shape in shapes.items():
        if name not in params:
            raise ValueError(f"the mask was not built for this model: "
                             f"{_unknown_name(name, params)}")
        if tuple(params[name].shape) != shape:
            raise ValueError(f"the mask was not built for this model: parameter {name!r} has "
                             f"shape {tuple(params[name].shape)}, the mask expects {shape}")


def _unknown_name(name, params):
    close = difflib.get_close_matches(str(name), list(params), n=3)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    return f"{name!r} is not a parameter of the model{hint}"


def _checked_positions(name, positions, numel):
    """Sorted unique int64 CPU positions [m] of parameter `name`, checked against its numel."""
    pos = torch.as_tensor(positions)
    if pos.dtype == torch.bool or pos.is_floating_point() or pos.is_complex():
        raise TypeError(f"positions of {name!r} must be integers, got dtype {pos.dtype}")
    pos = torch.unique(pos.reshape(-1).to("cpu", torch.int64), sorted=True)
    if pos.numel() and (pos[0] < 0 or pos[-1] >= numel):
        bad = int(pos[0]) if pos[0] < 0 else int(pos[-1])
        raise IndexError(f"position {bad} is out of range for parameter {name!r} with {numel} "
                         f"entries (valid flat positions: 0 to {numel - 1})")
    return pos


def split_flat(model, flat, names=None):
    """`{name: positions}` of flat indices [k] into the concatenation of the flattened
    parameters `names` (default: all), taken in `model.named_parameters()` order."""
    params = dict(model.named_parameters())
    names = [n for n in params if names is None or n in names]
    sizes = torch.tensor([params[n].numel() for n in names], dtype=torch.int64)
    ends = sizes.cumsum(0)
    flat = torch.as_tensor(flat, dtype=torch.int64)
    which = torch.searchsorted(ends, flat, right=True)         # tensor holding each index
    local = flat - (ends - sizes)[which.clamp(max=len(names) - 1)]
    return {n: local[which == i] for i, n in enumerate(names)}


def random_mask(model, size, seed=0):
    """The ablation baseline: `size` positions drawn uniformly without replacement over all
    parameter entries of `model`, with `torch.Generator().manual_seed(seed)`."""
    total = sum(p.numel() for p in model.parameters())
    size = check_int(size, "size")
    if not 0 <= size <= total:
        raise ValueError(f"size must be in [0, {total}] (the model's parameter count), got {size}")
    flat = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:size]
    return ParamMask(model, split_flat(model, flat))
