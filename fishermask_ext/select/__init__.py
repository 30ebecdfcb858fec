"""The selection layer: greedy Fisher trace-ratio batch selection over embeddings
(docs/ALGORITHM.md, steps D and E), on the ops layer's native kernels or twins: over a set of
candidates (`select_batch`), or a whole pool with a labeled mask (`select_from_pool`). Pools come
in the store layer's formats (a tensor, `FactoredEmbeddings`, an `EmbeddingStore`)."""
from .fisher import fisher_matrix
from .greedy import select_batch
from .pool import select_from_pool

__all__ = ["select_batch", "select_from_pool", "fisher_matrix"]
