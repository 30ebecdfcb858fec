"""The selection layer: greedy Fisher trace-ratio batch selection over embeddings
(docs/ALGORITHM.md, steps D and E), on the ops layer's native kernels or twins."""
from .greedy import fisher_matrix, select_batch

__all__ = ["select_batch", "fisher_matrix"]
