"""masked_grad_embeddings(..., out=store): chunk by chunk onto disk, resumed after a SIGKILL to
the same bytes as an uninterrupted run, computing none of the chunks already written; and the
refusals to mix another model, mask, weighting, pool size or dtype into a store."""
import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from fishermask_ext import masked_grad_embeddings, open_store, select_from_pool
from fishermask_ext.nn import get_model, random_mask
from fishermask_ext.testing import subprocess_env

N, BATCH, CHUNK = 96, 8, 16          # six chunks of two batches
CHILD_TIMEOUT_S = 120                # every wait on the child is bounded


def setup(dtype=torch.float32):
    """The model, pool and mask of these tests, the same in every process (seeded)."""
    torch.manual_seed(0)
    model = get_model("mlp", in_features=6, num_classes=4, hidden=[5]).to(dtype)
    x = torch.randn(N, 6, dtype=dtype)
    return model, x, random_mask(model, 9, seed=1)


@contextlib.contextmanager
def counted_rows(model):
    """A list that receives the batch size of every forward pass of `model` in the block."""
    seen = []
    handle = model.register_forward_pre_hook(lambda mod, args: seen.append(len(args[0])))
    try:
        yield seen
    finally:
        handle.remove()


@contextlib.contextmanager
def one_thread():
    """One intra-op thread, as the child uses: bit-identical results need the same reductions."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# The child embeds into the store and, once a chunk is on disk, holds before its next batch
# until the parent kills it: killed after a chunk and before the last, whatever the load.
CHILD = f"""
import sys, threading, torch
sys.path.insert(0, {os.path.dirname(__file__)!r})
from test_store_fill import setup, BATCH, CHUNK, _completed
from fishermask_ext import masked_grad_embeddings, open_store, select_from_pool
torch.set_num_threads(1)
model, x, mask = setup()
def hold(mod, args):
    if _completed(sys.argv[1]):
        threading.Event().wait()      # forever: the parent's SIGKILL ends it here
model.register_forward_pre_hook(hold)
masked_grad_embeddings(model, x, mask, batch_size=BATCH,
                       out=open_store(sys.argv[1], mode="w", chunk_rows=CHUNK))
"""


def _completed(path):
    try:
        with open(os.path.join(path, "manifest.json")) as f:   # replaced atomically: whole
            return json.load(f)["completed"]
    except FileNotFoundError:
        return []


@pytest.mark.slow           # a child process, killed and resumed
def test_killed_mid_run_resumes_to_the_uninterrupted_bytes(tmp_path):
    killed = str(tmp_path / "killed")
    child = subprocess.Popen([sys.executable, "-c", CHILD, killed], env=subprocess_env())
    try:
        deadline = time.monotonic() + CHILD_TIMEOUT_S
        while not _completed(killed) and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=CHILD_TIMEOUT_S)
    assert child.returncode == -signal.SIGKILL, "the child ended before it was killed"
    before = _completed(killed)
    assert 1 <= len(before) < N // CHUNK, before            # killed mid-way
    model, x, mask = setup()
    with one_thread(), counted_rows(model) as seen:
        store = masked_grad_embeddings(model, x, mask, batch_size=BATCH,
                                       out=open_store(killed, mode="a"))
    assert store.complete
    assert sum(seen) == N - CHUNK * len(before)      # nothing already written was recomputed
    with one_thread():
        masked_grad_embeddings(model, x, mask, batch_size=BATCH,
                               out=open_store(tmp_path / "whole", mode="w", chunk_rows=CHUNK))
        in_ram = masked_grad_embeddings(model, x, mask, batch_size=BATCH)
    for name in ("embeddings.bin", "manifest.json"):
        assert (tmp_path / "killed" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
    assert torch.equal(open_store(killed).read_rows(0, N), in_ram)
    labeled = torch.arange(N) % 5 == 0
    assert select_from_pool(open_store(killed), 6, labeled, backward_steps=1).tolist() == \
        select_from_pool(in_ram, 6, labeled, backward_steps=1).tolist()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["tensor", "dataset", "loader"])
def test_store_holds_the_in_memory_embeddings(tmp_path, dtype, kind):
    model, x, mask = setup(dtype)
    data = {"tensor": x, "dataset": TensorDataset(x, torch.zeros(N)),
            "loader": DataLoader(TensorDataset(x), batch_size=BATCH)}[kind]
    in_ram = masked_grad_embeddings(model, x, mask, batch_size=BATCH)
    store = masked_grad_embeddings(model, data, mask, batch_size=BATCH,
                                   out=open_store(tmp_path / "s", mode="w", chunk_rows=20))
    assert store.chunk_rows == 20 and store.n_chunks == 5 and store.dtype == dtype
    assert torch.equal(open_store(tmp_path / "s").read_rows(0, N), in_ram)
    # The default chunk is a multiple of the batch size: the batches of an in-memory run.
    default = masked_grad_embeddings(model, data, mask, batch_size=BATCH,
                                     out=open_store(tmp_path / "d", mode="w"))
    assert default.chunk_rows % BATCH == 0
    assert torch.equal(open_store(tmp_path / "d").read_rows(0, N), in_ram)


def test_resuming_a_complete_store_computes_nothing(tmp_path):
    model, x, mask = setup()
    masked_grad_embeddings(model, x, mask, out=open_store(tmp_path / "s", mode="w",
                                                          chunk_rows=CHUNK))
    with counted_rows(model) as seen:
        store = masked_grad_embeddings(model, x, mask, out=open_store(tmp_path / "s", mode="a"))
    assert seen == [] and store.complete


def test_a_store_refuses_another_model_mask_weighting_pool_or_dtype(tmp_path):
    model, x, mask = setup()
    path = tmp_path / "s"
    store = open_store(path, mode="w", chunk_rows=CHUNK)
    masked_grad_embeddings(model, x[:CHUNK], mask, batch_size=BATCH, out=store)
    other = get_model("mlp", in_features=6, num_classes=4, hidden=[5])    # other weights
    cases = [(dict(model=other), "another model"),
             (dict(mask=random_mask(model, 9, seed=2)), "another mask"),
             (dict(weighting="none"), "another weighting"),
             (dict(x=x[:CHUNK + 1]), r"shape \(16, 4, 9\), this run makes torch.float32 "
                                     r"\(17, 4, 9\)"),
             (dict(model=setup(torch.float64)[0], x=x.double()[:CHUNK]),
              "holds torch.float32 rows")]
    for change, message in cases:
        args = {**dict(model=model, x=x[:CHUNK], mask=mask, weighting="sqrt_p"), **change}
        with pytest.raises(ValueError, match=message), counted_rows(args["model"]) as seen:
            masked_grad_embeddings(args["model"], args["x"], args["mask"],
                                   weighting=args["weighting"], out=open_store(path, mode="a"))
        assert seen == [], change                           # refused before any work
    assert (path / "embeddings.bin").read_bytes() == \
        masked_grad_embeddings(model, x[:CHUNK], mask).numpy().tobytes()


def test_store_arguments_are_checked(tmp_path):
    model, x, mask = setup()
    masked_grad_embeddings(model, x, mask, out=open_store(tmp_path / "s", mode="w"))
    with pytest.raises(ValueError, match="open for reading; open it with open_store"):
        masked_grad_embeddings(model, x, mask, out=open_store(tmp_path / "s"))

    class Stream(IterableDataset):
        def __iter__(self):
            return iter(x)
    with pytest.raises(ValueError, match="out=store needs data with a length"):
        masked_grad_embeddings(model, Stream(), mask, out=open_store(tmp_path / "t", mode="w"))
    with pytest.raises(ValueError, match="data holds no samples"):
        masked_grad_embeddings(model, x[:0], mask, out=open_store(tmp_path / "u", mode="w"))
