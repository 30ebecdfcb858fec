"""`from testing import ...` for the tests in this folder: what needs pytest (skips, assertion
helpers), the data-file writers and a model. What the benchmarks share too lives in
fishermask_ext.testing (importable without pytest), re-exported here."""
import gzip
import os
import pickle
import re
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn
from torch._C._profiler import _EventType

from fishermask_ext.ops import native_available
from fishermask_ext.testing import DEVICES, DTYPES, network_terms, tol  # noqa: F401


def needs_native(device, name="greedy_select"):
    """Skip marker for native-vs-twin tests when the extension was not built for `device`."""
    return pytest.mark.skipif(not native_available(device, name),
                              reason=f"fishermask_ext native {name} not built for {device}")


def require_native(device, name="greedy_select"):
    """Inside a test: skip it when the native op is missing for `device`."""
    if not native_available(device, name):
        pytest.skip(f"fishermask_ext native {name} not built for {device}")


def assert_native_and_fake_raise(op, args, message):
    """The native `op` and its fake kernel (fishermask_ext/ops/fakes.py, under FakeTensorMode)
    both reject `args` with the same message: `message`, word for word (csrc/checks.h's)."""
    with pytest.raises(RuntimeError, match=re.escape(message)):
        op(*args)
    with pytest.raises(Exception, match=re.escape(message)):
        with torch._subclasses.fake_tensor.FakeTensorMode() as mode:
            op(*[mode.from_tensor(t) if isinstance(t, torch.Tensor) else t for t in args])


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


def check_picks(picks, labeled_mask, k):
    """Valid, unique, unlabeled positions: the rules every adapter's picks follow."""
    picks = np.asarray(picks)
    assert picks.shape == (k,) and picks.dtype.kind == "i"
    assert len(np.unique(picks)) == k
    assert ((picks >= 0) & (picks < len(labeled_mask))).all()
    assert not np.asarray(labeled_mask)[picks].any()


def assert_fisher_equal(got, expected, model, x):
    """Two Fisher diagonals {name: f} of `model` over the samples x agree within
    tol(terms=network_terms(model, x, fisher=True)), each tensor at its own scale."""
    assert got.keys() == expected.keys()
    terms = network_terms(model, x, fisher=True)
    for n in expected:
        torch.testing.assert_close(got[n], expected[n], msg=n, **tol(
            expected[n].dtype, terms=terms, magnitude=expected[n]))


def tiny_run(*extra, strategies="random", rounds=1, seeds="0", epochs=1, pool_size=80,
             test_size=40):
    """The flags of a `fishermask run` that takes seconds: a small digits pool, an MLP of 8
    hidden units, 10 initial labels and 5 per round, no progress bars; `extra` flags appended
    (strategies or seeds None: leave that flag to the caller)."""
    return ["--pool-size", str(pool_size), "--test-size", str(test_size),
            "--model-option", "hidden=[8]", "--initial", "10", "--query", "5",
            "--rounds", str(rounds), "--epochs", str(epochs), "--no-progress",
            *(["--strategies", strategies] if strategies else []),
            *(["--seeds", seeds] if seeds else []), *extra]
