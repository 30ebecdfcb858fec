"""Step C into an on-disk EmbeddingStore: chunk by chunk, each chunk durable before the next,
and a resumed run computes only the chunks the store lacks."""
from torch.utils.data import DataLoader

from ..ops import sizes
from . import batches

__all__ = ["fill_store"]


def fill_store(store, data, embed, *, n, dim, dtype, fingerprints, batch_size, device, bar):
    """Fill `store` with embed(x) -> [b, C, D] of the batches of `data` (n samples, D = dim,
    `dtype`), skipping the chunks it already holds; returns the store.

    Batches start at each chunk's first row, so a chunk holds the same bytes whether the run
    was interrupted or not; a new store's chunks are a multiple of the batch size, so its
    batches are also those of an in-memory run. `fingerprints` must match a store's own."""
    if store.mode == "r":
        raise ValueError(f"out: the store at {store.path} is open for reading; open it with "
                         f"open_store(path, mode='w') (new) or mode='a' (resume)")
    if n is None:
        raise ValueError("out=store needs data with a length (a Tensor, a sized Dataset or a "
                         "DataLoader over one), to size the store")
    bs = data.batch_size if isinstance(data, DataLoader) and data.batch_size else batch_size
    first = None
    if store.defined:          # refuse to mix before any work; C is the store's own
        store.begin((n, store.shape[1], dim), dtype, fingerprints)
    elif n:                    # a new store learns C from its first batch
        first = embed(next(batches.iter_batches(batches.rows(data, 0, min(bs, n)), bs, device)))
        rows = max(bs, sizes.chunk_rows(first.shape[1], dim) // bs * bs)
        store.begin((n, first.shape[1], dim), first.dtype, fingerprints, chunk_rows=rows)
    else:
        raise ValueError("data holds no samples")
    bar.update(n - sum(b - a for a, b in map(store.chunk_bounds, store.missing)))
    for i in store.missing:
        start, stop = store.chunk_bounds(i)
        chunk, at = None, start
        if first is not None and start == 0:       # chunk 0's first batch, already computed
            chunk, at, first = _placed(chunk, first, 0, stop), len(first), None
            bar.update(at)
        for x in batches.iter_batches(batches.rows(data, at, stop), bs, device):
            emb = embed(x)
            chunk = _placed(chunk, emb, at - start, stop - start)
            at += len(emb)
            bar.update(len(emb))
        if at != stop:
            raise ValueError(f"data yielded {at - start} samples for rows {start}-{stop} of the "
                             f"store; it must yield as many as its length ({n})")
        store.write_chunk(i, chunk)
    return store


def _placed(chunk, emb, at, rows):
    """`chunk` (a CPU buffer of `rows` rows, created on first use) with emb [b, C, D] copied
    in at row `at`; the buffer is one chunk, whatever device the batches come from."""
    if chunk is None:
        chunk = emb.new_empty((rows, *emb.shape[1:]), device="cpu")
    if at + len(emb) > rows:
        raise ValueError("data yielded more samples than its length; a store needs them equal")
    chunk[at:at + len(emb)] = emb
    return chunk
