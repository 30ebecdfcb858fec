"""Byte-level reads and writes of an embedding store's data files (store.py): whole ranges
through pread/pwrite, which may move fewer bytes than asked."""
import math
import os

import torch

__all__ = ["read_into", "write_from", "bytes_of", "describe", "numel"]


def read_into(fd, out, offset, path, what):
    """Fill the contiguous CPU tensor `out` with the bytes of file descriptor `fd` from
    `offset`; ValueError naming `path` and `what` if the file ends first."""
    buf, done = bytes_of(out), 0
    while done < len(buf):     # pread may return fewer bytes than asked; 0 only at EOF
        n = os.preadv(fd, [buf[done:]], offset + done)
        if n == 0:
            raise ValueError(f"{path} ended at byte {offset + done}, inside {what}: the file "
                             f"was truncated after opening")
        done += n
    return out


def write_from(fd, t, offset):
    """Write the bytes of tensor `t` (any device, made contiguous on the CPU) at `offset`."""
    buf, done = bytes_of(t.detach().to("cpu").contiguous()), 0
    while done < len(buf):
        done += os.pwrite(fd, buf[done:], offset + done)


def bytes_of(t):
    """A writable byte view of the memory of a contiguous CPU tensor (no copy)."""
    return memoryview(t.view(-1).view(torch.uint8).numpy())


def describe(x):
    if torch.is_tensor(x):
        return f"{x.dtype} {tuple(x.shape)} on {x.device}" + \
            ("" if x.is_contiguous() else " (not contiguous)")
    return type(x).__name__


def numel(row):
    """Values in one row of the given shape."""
    return math.prod(row)
