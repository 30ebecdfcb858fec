"""`from testing import ...` for the tests in this folder: the shared helpers now live in
fishermask_ext.testing, where the benchmarks can import them too; the data-file writer below is
for the tests only."""
import gzip
import struct

import numpy as np

from fishermask_ext.testing import DEVICES, DTYPES, needs_native, require_native  # noqa: F401


def write_idx(path, array):
    """Write `array` as a gzipped IDX file of unsigned bytes (the MNIST format)."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())
