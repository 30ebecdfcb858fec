"""Steps A to C of docs/ALGORITHM.md on a torch model: the Fisher diagonal, the parameter mask,
the masked per-sample gradient embeddings; and the small models the tests, benchmarks and the
driver share. Needs torch only.

    batches.py   walking a Tensor, Dataset or DataLoader in pool order
    state.py     eval mode with autograd on, the model's device, its logits
    hooks.py     recording layer inputs and output-gradient edges; per-layer views
    masks.py     ParamMask, random_mask
    fisher.py    fisher_diagonal (step A), fisher_mask (step B)
    embeddings.py masked_grad_embeddings (step C)
    stored.py    step C into an on-disk EmbeddingStore, chunk by chunk, resumable
    models.py    MLP, SmallCNN, ResNet18Narrow, get_model
"""
from .embeddings import masked_grad_embeddings
from .fisher import fisher_diagonal, fisher_mask
from .masks import ParamMask, random_mask, split_flat
from .models import MLP, MODELS, ResNet18Narrow, SmallCNN, get_model
from .state import logits_of, model_fingerprint

__all__ = ["masked_grad_embeddings", "fisher_diagonal", "fisher_mask", "ParamMask",
           "random_mask", "split_flat", "get_model", "MODELS", "MLP", "SmallCNN",
           "ResNet18Narrow", "logits_of", "model_fingerprint"]
