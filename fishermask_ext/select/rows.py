"""What selection reads: an [N, C, D] torch tensor, a numpy array, or an embedding store, seen
through one interface (shape, dtype, device, chunks of rows), and the answer given back in the
kind the caller passed (numpy in, numpy out)."""
import numpy as np
import torch

from ..ops.loop import Block
from ..ops.sizes import chunk_rows

__all__ = ["Rows", "RowRange", "as_rows"]


class RowRange:
    """Rows [start, stop) of an embedding store (any object with shape, dtype, read_rows), as a
    store of its own: reads never leave the range (a rank reads only its shard)."""

    def __init__(self, source, start, stop):
        N = source.shape[0]
        if not 0 <= start <= stop <= N:
            raise ValueError(f"row range [{start}, {stop}) is outside the {N} rows")
        self.source, self.start, self.stop = source, start, stop
        self.shape = (stop - start, *source.shape[1:])
        self.dtype = source.dtype

    def read_rows(self, start, stop):
        if not 0 <= start <= stop <= self.shape[0]:
            raise ValueError(f"rows [{start}, {stop}) are outside this range of "
                             f"{self.shape[0]} rows")
        return self.source.read_rows(self.start + start, self.start + stop)


class Rows:
    """An [N, C, D] pool of embeddings. `tensor` is set when it is in memory (a torch tensor,
    or a numpy array viewed without a copy); otherwise `source.read_rows(start, stop)` reads a
    range of rows (an embedding store: only one chunk is resident at a time)."""

    def __init__(self, tensor=None, source=None, kind="torch"):
        self.tensor, self.source, self.kind = tensor, source, kind
        held = tensor if tensor is not None else source
        self.shape = tuple(held.shape)
        self.dtype = held.dtype
        self.device = tensor.device if tensor is not None else torch.device("cpu")

    def read(self, start, stop):
        if self.tensor is not None:
            return self.tensor[start:stop]
        return self.source.read_rows(start, stop)

    def chunks(self, rows=None):
        """(start, [n, C, D] rows) for consecutive chunks of about ops.sizes.CHUNK_BYTES."""
        N, C, D = self.shape
        rows = rows or chunk_rows(C, D)
        for s in range(0, N, rows):
            yield s, self.read(s, min(N, s + rows))

    def blocks(self, candidates=None):
        """The ops.loop blocks: the whole tensor when in memory, else one block per chunk, each
        read again whenever the loop scores it (so only one is resident)."""
        N, C, D = self.shape
        if self.tensor is not None:
            return [Block(lambda: self.tensor, 0, N, candidates)]
        rows = chunk_rows(C, D)
        return [Block(lambda s=s, e=min(N, s + rows): self.read(s, e), s, min(N, s + rows) - s,
                      None if candidates is None else candidates[s:s + rows])
                for s in range(0, N, rows)]

    def give_back(self, *tensors):
        """The results in the caller's kind: numpy arrays for a numpy input, else tensors."""
        if self.kind == "numpy":
            return tuple(t.cpu().numpy() for t in tensors)
        return tensors


def as_rows(x, name):
    """Rows over `x`; TypeError naming `name` for anything else."""
    if isinstance(x, torch.Tensor):
        return Rows(tensor=x)
    if isinstance(x, np.ndarray):
        if x.dtype not in (np.float32, np.float64):
            raise TypeError(f"{name} must be a float32 or float64 array, got {x.dtype}; "
                            f"convert with .astype(np.float32)")
        # No copy: torch shares the array's memory (a np.memmap stays on disk).
        return Rows(tensor=torch.from_numpy(np.ascontiguousarray(x)), kind="numpy")
    if all(hasattr(x, a) for a in ("read_rows", "shape", "dtype")):
        return Rows(source=x, kind="store")
    raise TypeError(f"{name} must be a torch.Tensor or numpy array [N, C, D], or an embedding "
                    f"store (fishermask_ext.open_store), got {type(x).__name__}")
