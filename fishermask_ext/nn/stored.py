"""Step C into an on-disk EmbeddingStore: chunk by chunk, each chunk durable before the next,
and a resumed run computes only the chunks the store lacks."""
import torch
from torch.utils.data import DataLoader

from ..ops import sizes
from ..store.factored import FactoredEmbeddings
from . import batches

__all__ = ["fill_store"]


def fill_store(store, data, embed, *, n, dim, dtype, fingerprints, batch_size, device, bar,
               probe=False):
    """Fill `store` with embed(x) -> [b, C, D] (a tensor, or FactoredEmbeddings) of the batches
    of `data` (n samples, D = dim, `dtype`), skipping the chunks it already holds; returns the
    store.

    Batches start at each chunk's first row, so a chunk holds the same bytes whether the run
    was interrupted or not; a new store's chunks are a multiple of the batch size, so its
    batches are also those of an in-memory run. `fingerprints` must match a store's own.
    probe: embed one sample first even for a store that has a shape, to learn whether the rows
    come out factored (and their layout), which the store's begin checks against its own."""
    if store.mode == "r":
        raise ValueError(f"out: the store at {store.path} is open for reading; open it with "
                         f"open_store(path, mode='w') (new) or mode='a' (resume)")
    if n is None:
        raise ValueError("out=store needs data with a length (a Tensor, a sized Dataset or a "
                         "DataLoader over one), to size the store")
    bs = data.batch_size if isinstance(data, DataLoader) and data.batch_size else batch_size
    if store.defined and not probe:    # refuse to mix before any work; C is the store's own
        store.begin((n, store.shape[1], dim), dtype, fingerprints)
    elif n:                    # learn C (and the layout) from one sample; its rows are not kept
        first = embed(next(batches.iter_batches(batches.rows(data, 0, 1), 1, device)))
        layout = {}
        if isinstance(first, FactoredEmbeddings):
            layout["factored"] = dict(d_bar=first.d_bar, d_rest=first.d_rest, columns=None
                                      if first.columns is None else first.columns.tolist())
        rows = max(bs, sizes.chunk_rows(first.shape[1], dim) // bs * bs)
        store.begin((n, first.shape[1], dim), first.dtype, fingerprints, chunk_rows=rows,
                    **layout)
    else:
        raise ValueError("data holds no samples")
    # The rows already there are where the bar starts, not work done now: as tqdm's `initial`
    # they do not count in its rate (a complete store showed 1,915,161 img/s).
    bar.initial = bar.n = n - sum(b - a for a, b in map(store.chunk_bounds, store.missing))
    bar.refresh()
    for i in store.missing:
        start, stop = store.chunk_bounds(i)
        # One chunk resident, on the CPU whatever device the batches come from: a dense chunk
        # preallocated, a factored one as its batches' factors, joined once (FactoredEmbeddings.cat).
        chunk = None if getattr(store, "factored", False) else torch.empty(
            (stop - start, *store.shape[1:]), dtype=store.dtype)
        parts, filled = [], 0
        for x in batches.iter_batches(batches.rows(data, start, stop), bs, device):
            emb = embed(x)
            if filled + len(emb) > stop - start:
                raise ValueError(f"data yielded more than {stop - start} samples for rows "
                                 f"{start}-{stop} of the store; it must yield its length ({n})")
            if chunk is None:
                parts.append(emb.to("cpu"))
            else:
                chunk[filled:filled + len(emb)] = emb
            filled += len(emb)
            bar.update(len(emb))
        if filled != stop - start:
            raise ValueError(f"data yielded {filled} samples for rows {start}-{stop} of the "
                             f"store; it must yield as many as its length ({n})")
        store.write_chunk(i, chunk if chunk is not None else FactoredEmbeddings.cat(parts))
    return store
