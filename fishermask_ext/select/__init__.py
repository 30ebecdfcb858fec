"""The selection layer: greedy Fisher trace-ratio batch selection over embeddings
(docs/ALGORITHM.md, steps D and E), on the ops layer's native kernels or twins; and the
on-disk embedding store selection reads pools from (store.py)."""
from .greedy import fisher_matrix, select_batch
from .store import EmbeddingStore, open_store

__all__ = ["select_batch", "fisher_matrix", "EmbeddingStore", "open_store"]
