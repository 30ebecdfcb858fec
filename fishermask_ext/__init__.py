"""fishermask_ext: fused CPU/CUDA kernels for Fisher-information active learning.

Selection (step E of ALGORITHM.md): `select_batch`, `fisher_matrix`.
`native_available(device)` tells whether the compiled kernels are there; every op falls back to
its pure-PyTorch twin in `fishermask_ext.reference` otherwise.
"""
from ._ops import native_available
from .select import fisher_matrix, select_batch
from .embeddings import masked_grad_embeddings
from .fisher import fisher_diagonal, fisher_mask
from .masks import ParamMask, random_mask
from .models import MLP, ResNet18Narrow, SmallCNN, get_model
from . import data, report, strategies   # the active-learning driver (cli.py: `fishermask`)
from .loop import run_experiment

__version__ = "0.1.0"
__all__ = ["select_batch", "fisher_matrix", "native_available",
           "ParamMask", "random_mask", "fisher_diagonal", "fisher_mask",
           "masked_grad_embeddings", "get_model", "MLP", "SmallCNN", "ResNet18Narrow"]
