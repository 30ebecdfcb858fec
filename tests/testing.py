"""`from testing import ...` for the tests in this folder: the shared helpers now live in
fishermask_ext.testing, where the benchmarks can import them too; the data-file writers and the
model below are for the tests only."""
import gzip
import os
import pickle
import struct
import subprocess
import sys

import numpy as np
import torch
from torch import nn
from torch._C._profiler import _EventType

from fishermask_ext.testing import DEVICES, DTYPES, needs_native, require_native  # noqa: F401


def run_under_narrower_isas(script):
    """Run the Python `script` in a subprocess once per narrower CPU blocking (AVX2, SSE2,
    chosen by FISHERMASK_CPU_ISA when the process starts); it asserts its own results."""
    for isa in ("base", "v3"):
        env = dict(os.environ, FISHERMASK_CPU_ISA=isa)
        subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=120)


def peak_bytes(fn):
    """Peak growth of the bytes torch's CPU allocator holds while fn() runs (the profiler's
    allocation events, which see the native kernels' ATen allocations too)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                profile_memory=True) as prof:
        fn()
    events, stack = [], list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        e = stack.pop()
        stack.extend(e.children)
        if e.tag == _EventType.Allocation:
            events.append((e.start_time_ns, e.extra_fields.alloc_size,
                           e.extra_fields.total_allocated))
    events.sort()
    before = events[0][2] - events[0][1]
    return max(total for _, _, total in events) - before


def write_idx(path, array):
    """Write `array` as a gzipped IDX file of unsigned bytes (the MNIST format)."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_cifar10(folder, batches):
    """Write `cifar-10-batches-py` under `folder`: batches maps each of data_batch_1..5 and
    test_batch to (uint8 [n, 3072] rows of 1,024 red, green, then blue values, labels)."""
    folder = os.path.join(folder, "cifar-10-batches-py")
    os.makedirs(folder, exist_ok=True)
    for name, (rows, labels) in batches.items():
        with open(os.path.join(folder, name), "wb") as f:
            pickle.dump({b"data": rows, b"labels": list(labels)}, f)


class ReuseNet(nn.Module):
    """Conv1d + BatchNorm1d, then one Linear applied twice over a sequence dim."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(2, 3, 3, stride=2)
        self.bn = nn.BatchNorm1d(3)
        self.proj = nn.Linear(3, 3)
        self.linear = nn.Linear(3, 4)

    def forward(self, x):  # x: [n, 2, 9]
        h = torch.relu(self.bn(self.conv(x))).transpose(1, 2)    # [n, 4, 3]
        return self.linear(torch.tanh(self.proj(torch.tanh(self.proj(h)))).mean(1))


def cli_fails(capsys, argv, *needles):
    """`fishermask` main(argv) returns 2 with one line on stderr holding every needle and no
    traceback; returns that line."""
    from fishermask_ext.al import cli
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err
