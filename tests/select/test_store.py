"""The on-disk embedding store on its own: writing chunks, reading rows, and every refusal
(incomplete, truncated, mixed, malformed). Filling it from a model is tests/nn/test_store_fill.py."""
import json
import os
import pickle

import pytest
import torch

from fishermask_ext import open_store, select_batch, select_from_pool
from fishermask_ext.testing import DTYPES

FP = {"model": "m1", "mask": "k1", "weighting": "none"}


def _written(path, X, chunk_rows, chunks=None):
    """A store at `path` holding X [N, C, D], with only `chunks` (default: all) written."""
    store = open_store(path, mode="w", chunk_rows=chunk_rows).begin(X.shape, X.dtype, FP)
    for i in range(store.n_chunks) if chunks is None else chunks:
        a, b = store.chunk_bounds(i)
        store.write_chunk(i, X[a:b])
    return store


@pytest.mark.parametrize("dtype", DTYPES)
def test_rows_read_back_exactly(tmp_path, dtype):
    X = torch.randn(23, 3, 5, dtype=dtype)
    _written(tmp_path / "s", X, chunk_rows=4).close()
    store = open_store(tmp_path / "s")
    assert store.shape == (23, 3, 5) and store.dtype == dtype and len(store) == 23
    assert store.n_chunks == 6 and store.complete and store.fingerprints == FP
    assert torch.equal(store.read_rows(0, 23), X)
    for a, b in [(0, 0), (5, 6), (3, 17), (22, 23), (23, 23)]:   # across chunk bounds, empty
        assert torch.equal(store.read_rows(a, b), X[a:b])
    buf = torch.full((7, 3, 5), float("nan"), dtype=dtype)
    assert store.read_rows(9, 16, out=buf) is buf and torch.equal(buf, X[9:16])
    assert os.path.getsize(tmp_path / "s" / "embeddings.bin") == X.numel() * X.element_size()
    # The manifest path names the same store, and a store pickles as its folder.
    assert torch.equal(open_store(tmp_path / "s" / "manifest.json").read_rows(0, 23), X)
    assert torch.equal(pickle.loads(pickle.dumps(store)).read_rows(2, 9), X[2:9])


def test_read_rows_rejects_bad_ranges_and_buffers(tmp_path):
    X = torch.randn(10, 2, 3)
    store = _written(tmp_path / "s", X, chunk_rows=3)
    with pytest.raises(ValueError, match="stop must be an int >= 4 and <= 10"):
        store.read_rows(4, 11)
    with pytest.raises(ValueError, match="stop must be an int >= 5"):
        store.read_rows(5, 4)
    with pytest.raises(TypeError, match="start must be an int"):
        store.read_rows(1.0, 4)
    for bad in (torch.empty(3, 2, 3, dtype=torch.float64), torch.empty(4, 2, 3),
                torch.empty(3, 3, 2).transpose(1, 2), "buffer"):
        with pytest.raises(ValueError, match=r"out must be a contiguous CPU torch.float32 tensor "
                                             r"of shape \(3, 2, 3\)"):
            store.read_rows(0, 3, out=bad)


def test_incomplete_store_is_refused_for_reading(tmp_path):
    X = torch.randn(20, 2, 3)
    _written(tmp_path / "s", X, chunk_rows=3, chunks=[0, 1, 4]).close()
    with pytest.raises(ValueError, match=r"incomplete: chunk\(s\) 2-3, 5-6 of 0-6 were never "
                                         r"written; .*--resume"):
        open_store(tmp_path / "s")
    store = open_store(tmp_path / "s", mode="a")      # a writer may open it, not read it
    assert store.missing == (2, 3, 5, 6) and store.completed == (0, 1, 4)
    with pytest.raises(ValueError, match="incomplete"):
        store.read_rows(0, 3)
    for i in store.missing:                           # finishing it makes it readable
        a, b = store.chunk_bounds(i)
        store.write_chunk(i, X[a:b])
    assert torch.equal(open_store(tmp_path / "s").read_rows(0, 20), X)


@pytest.mark.parametrize("change", [-1, -24, +8])
def test_truncated_or_padded_data_file_is_refused(tmp_path, change):
    X = torch.randn(6, 2, 2, dtype=torch.float64)
    _written(tmp_path / "s", X, chunk_rows=4).close()
    data = tmp_path / "s" / "embeddings.bin"
    os.truncate(data, os.path.getsize(data) + change)
    for mode in ("r", "a"):
        with pytest.raises(ValueError, match=rf"holds {192 + change} bytes, but a store of shape "
                                             rf"\(6, 2, 2\) float64 needs N·\[2, 2\]·itemsize = "
                                             rf"192 there: the file is truncated"):
            open_store(tmp_path / "s", mode=mode)


def test_truncated_after_opening_is_caught_by_the_read(tmp_path):
    store = _written(tmp_path / "s", torch.randn(8, 2, 2), chunk_rows=4)
    os.truncate(tmp_path / "s" / "embeddings.bin", 40)
    assert store.read_rows(0, 2).shape == (2, 2, 2)                  # bytes 0-31 still there
    with pytest.raises(ValueError, match="ended at byte 40, inside rows 2-8"):
        store.read_rows(2, 8)


def test_modes_and_missing_stores(tmp_path):
    with pytest.raises(ValueError, match="mode must be one of 'r', 'w', 'a', got"):
        open_store(tmp_path, mode="x")
    with pytest.raises(FileNotFoundError, match="no embedding store at .*fishermask embed"):
        open_store(tmp_path / "none")
    empty = open_store(tmp_path / "new", mode="a")            # nothing there yet: a new store
    assert not empty.defined and "empty" in repr(empty)
    with pytest.raises(ValueError, match="is empty; fill it"):
        empty.shape
    _written(tmp_path / "s", torch.randn(4, 1, 1), chunk_rows=2).close()
    with pytest.raises(FileExistsError, match="already holds an embedding store; .*mode='a'"):
        open_store(tmp_path / "s", mode="w")
    with pytest.raises(ValueError, match="has chunk_rows=2"):
        open_store(tmp_path / "s", mode="a", chunk_rows=3)
    reader = open_store(tmp_path / "s")
    with pytest.raises(ValueError, match="open for reading; open it with mode='w'"):
        reader.begin((4, 1, 1), torch.float32, FP)
    os.remove(tmp_path / "s" / "embeddings.bin")
    with pytest.raises(FileNotFoundError, match="has a manifest but no embeddings.bin"):
        open_store(tmp_path / "s")


def test_malformed_manifest_is_refused(tmp_path):
    _written(tmp_path / "s", torch.randn(4, 1, 1), chunk_rows=2).close()
    manifest = tmp_path / "s" / "manifest.json"
    manifest.write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        open_store(tmp_path / "s")
    manifest.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="is not an embedding store manifest"):
        open_store(tmp_path / "s")


def test_a_store_refuses_to_mix(tmp_path):
    store = _written(tmp_path / "s", torch.randn(9, 2, 3), chunk_rows=4, chunks=[0])
    for shape, dtype in [((9, 2, 4), torch.float32), ((8, 2, 3), torch.float32),
                         ((9, 2, 3), torch.float64)]:
        with pytest.raises(ValueError, match=r"refuse to mix: .*holds torch.float32 rows of "
                                             r"shape \(9, 2, 3\)"):
            open_store(tmp_path / "s", mode="a").begin(shape, dtype, FP)
    for key in FP:
        with pytest.raises(ValueError, match=f"refuse to mix: .*written with another {key} "
                                             f"\\('{FP[key]}' there, 'other' here\\)"):
            open_store(tmp_path / "s", mode="a").begin((9, 2, 3), torch.float32,
                                                       {**FP, key: "other"})
    assert open_store(tmp_path / "s", mode="a").begin((9, 2, 3), torch.float32, FP).completed \
        == (0,)
    with pytest.raises(TypeError, match="holds float32 or float64"):
        open_store(tmp_path / "t", mode="w").begin((9, 2, 3), torch.float16, FP)
    with pytest.raises(ValueError, match="chunk 0 of .* is already written"):
        store.write_chunk(0, torch.zeros(4, 2, 3))
    with pytest.raises(ValueError, match=r"chunk 2 must be a torch.float32 tensor of shape "
                                         r"\(1, 2, 3\)"):
        store.write_chunk(2, torch.zeros(4, 2, 3))
    with pytest.raises(ValueError, match="chunk must be an int >= 0 and <= 2"):
        store.write_chunk(3, torch.zeros(1, 2, 3))


def test_empty_pool_store(tmp_path):
    store = _written(tmp_path / "s", torch.zeros(0, 3, 4), chunk_rows=5)
    assert store.n_chunks == 0 and store.complete
    assert open_store(tmp_path / "s").read_rows(0, 0).shape == (0, 3, 4)



@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backward_steps", [0, 1])
def test_selection_from_a_store_equals_selection_from_ram(tmp_path, monkeypatch, dtype,
                                                          backward_steps):
    import fishermask_ext.select.rows as rows_mod
    monkeypatch.setattr(rows_mod, "chunk_rows", lambda C, D: 16)   # selection reads 5 blocks
    g = torch.Generator().manual_seed(7)
    X = torch.randn(70, 3, 11, generator=g, dtype=dtype)
    labeled = torch.rand(70, generator=g) < 0.2
    store = _written(tmp_path / "s", X, chunk_rows=9)              # chunks unlike the blocks
    reader = open_store(tmp_path / "s")
    opts = dict(lamb=0.1, backward_steps=backward_steps, return_gains=True)
    for got, want in [(select_from_pool(reader, 7, labeled, **opts),
                       select_from_pool(X, 7, labeled, **opts)),
                      (select_batch(reader, 5, **opts), select_batch(X, 5, **opts))]:
        assert got[0].tolist() == want[0].tolist()
        assert torch.equal(got[1], want[1])
    store.close()


def _factored_store(path, E, chunk_rows=4):
    store = open_store(path, mode="w", chunk_rows=chunk_rows)
    cols = None if E.columns is None else E.columns.tolist()
    store.begin(E.shape, E.dtype, {"model": "m"},
                factored=dict(d_bar=E.d_bar, d_rest=E.d_rest, columns=cols))
    for i in store.missing:
        a, b = store.chunk_bounds(i)
        store.write_chunk(i, E[a:b])
    return store


def test_factored_store_round_trip_and_selection(tmp_path):
    from fishermask_ext import FactoredEmbeddings, select_batch
    g = torch.Generator().manual_seed(0)
    E = FactoredEmbeddings(torch.randn(11, 3, 3, generator=g), torch.randn(11, 4, generator=g),
                           torch.randn(11, 3, 2, generator=g),
                           columns=torch.randperm(14, generator=g))
    _factored_store(tmp_path / "s", E).close()
    assert sorted(os.listdir(tmp_path / "s")) == ["G.bin", "H.bin", "R.bin", "manifest.json"]
    store = open_store(tmp_path / "s", factored=True)
    assert store.factored and store.shape == (11, 3, 14) and (store.d_bar, store.d_rest) == (4, 2)
    back = store.read_rows(2, 9)
    assert isinstance(back, FactoredEmbeddings)
    assert torch.equal(back.dense(), E.dense()[2:9])
    assert select_batch(store, 4).tolist() == select_batch(E.dense(), 4).tolist()


def test_a_store_refuses_the_other_layout(tmp_path):
    from fishermask_ext import FactoredEmbeddings
    E = FactoredEmbeddings(torch.randn(6, 2, 2), torch.randn(6, 3))
    _factored_store(tmp_path / "f", E).close()
    _written(tmp_path / "d", torch.randn(6, 2, 6), chunk_rows=4).close()
    with pytest.raises(ValueError, match="holds factored embeddings, not dense"):
        open_store(tmp_path / "f", factored=False)
    with pytest.raises(ValueError, match="holds dense embeddings, not factored"):
        open_store(tmp_path / "d", factored=True)
    with pytest.raises(ValueError, match="refuse to mix: .* holds factored embeddings, this run "
                                         "makes dense ones"):
        open_store(tmp_path / "f", mode="a").begin((6, 2, 6), torch.float32, {"model": "m"})
    with pytest.raises(ValueError, match="refuse to mix: .* holds dense embeddings, this run "
                                         "makes factored ones"):
        open_store(tmp_path / "d", mode="a").begin(
            (6, 2, 6), torch.float32, {}, factored=dict(d_bar=3, d_rest=0, columns=None))


def test_a_rank_reads_its_rows_of_a_real_store(tmp_path):
    """distributed.local_rows over an EmbeddingStore (dense and factored) as one process sees
    it: a RowRange of all rows that selection reads like the store itself."""
    from fishermask_ext import FactoredEmbeddings, select_batch
    from fishermask_ext.select.rows import RowRange
    X = torch.randn(9, 2, 5)
    dense = _written(tmp_path / "d", X, chunk_rows=4)
    E = FactoredEmbeddings(torch.randn(9, 2, 2), torch.randn(9, 3), torch.randn(9, 2, 1))
    fact = _factored_store(tmp_path / "f", E)
    for store, want in ((dense, X), (fact, E.dense())):
        rows = RowRange(open_store(store.path), 2, 9)
        assert select_batch(rows, 3).tolist() == select_batch(want[2:], 3).tolist()
