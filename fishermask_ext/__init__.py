"""fishermask_ext: fused CPU/CUDA kernels for Fisher-information active learning.

Selection (step E of docs/ALGORITHM.md): `select_batch`, `select_from_pool`, `fisher_matrix`;
pools on disk: `open_store`, `EmbeddingStore` (filled by `masked_grad_embeddings(..., out=store)`).
Embeddings (steps A to C, `fishermask_ext.nn`): `fisher_diagonal`, `fisher_mask`,
`masked_grad_embeddings`, `ParamMask`, `random_mask`, and the models `get_model`, `MLP`,
`SmallCNN`, `ResNet18Narrow`.
`native_available(device)` tells whether the compiled kernels are there; every op falls back to
its pure-PyTorch twin in `fishermask_ext.ops.reference` otherwise.

The query strategies (`fishermask_ext.strategies`, torch only) and the active-learning driver
(`fishermask_ext.al`: `data`, `report`, `run_experiment`, which need the `al` extra) load on
first use, so importing this package loads ops, store, select and nn only (docs/DEVELOPING.md,
"Layers").
"""
import importlib

from .ops import native_available
from .nn import (MLP, ParamMask, ResNet18Narrow, SmallCNN, fisher_diagonal, fisher_mask,
                 get_model, masked_grad_embeddings, random_mask)
from .select import fisher_matrix, select_batch, select_from_pool
from .store import EmbeddingStore, FactoredEmbeddings, open_store
from ._version import __version__

__all__ = ["select_batch", "select_from_pool", "fisher_matrix", "native_available",
           "FactoredEmbeddings",
           "EmbeddingStore", "open_store",
           "ParamMask", "random_mask", "fisher_diagonal", "fisher_mask",
           "masked_grad_embeddings", "get_model", "MLP", "SmallCNN", "ResNet18Narrow"]

# Driver names: (module, attribute or None for the module itself), imported on first access.
_LAZY = {"strategies": ("fishermask_ext.strategies", None),
         "data": ("fishermask_ext.al.data", None),
         "report": ("fishermask_ext.al.report", None),
         "run_experiment": ("fishermask_ext.al.loop", "run_experiment")}


def __getattr__(name):   # PEP 562
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attr = _LAZY[name]
    value = importlib.import_module(module)
    value = value if attr is None else getattr(value, attr)
    globals()[name] = value      # later lookups skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
