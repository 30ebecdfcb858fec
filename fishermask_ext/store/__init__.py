"""The store layer: the formats an embedding pool comes in, below both the layer that writes
them (nn) and the one that reads them (select). A pool is a dense [N, C, D] tensor, a
`FactoredEmbeddings` (the classifier block kept as G ⊗ h̄, docs/ALGORITHM.md "Factored
embeddings"), or an `EmbeddingStore` on disk holding either (`open_store`).

    embedding_store.py  EmbeddingStore (the reader) and open_store
    writer.py           the writer protocol: begin, missing, chunk_bounds, write_chunk
    manifest.py         the manifest.json format
    io.py               byte I/O: pread/pwrite of rows
    factored.py         FactoredEmbeddings and the natural column order
"""
from .embedding_store import MANIFEST, EmbeddingStore, open_store
from .factored import FactoredEmbeddings

__all__ = ["EmbeddingStore", "open_store", "FactoredEmbeddings", "MANIFEST"]
