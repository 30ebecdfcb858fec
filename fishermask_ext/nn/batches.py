"""Walking the data of steps A and C in pool order: Tensors, Datasets and DataLoaders alike."""
import torch
from torch.utils.data import BatchSampler, DataLoader, SequentialSampler, Subset
from torch.utils.data.dataloader import _InfiniteConstantSampler

from .._checks import check_int

__all__ = ["num_samples", "take", "rows", "iter_batches"]


def num_samples(data):
    """Number of samples in `data` (Tensor, Dataset or DataLoader); None if it has no length."""
    try:
        return len(data.dataset if isinstance(data, DataLoader) else data)
    except TypeError:
        return None


def take(data, indices):
    """The samples `indices` [k] of `data`, as the same kind of container."""
    if torch.is_tensor(data):
        return data[indices.to(data.device)]
    if isinstance(data, DataLoader):
        return DataLoader(Subset(data.dataset, indices.tolist()), batch_size=data.batch_size,
                          collate_fn=data.collate_fn, num_workers=data.num_workers)
    return Subset(data, indices.tolist())


def rows(data, start, stop):
    """The samples [start, stop) of `data`: a view of a Tensor, else take() of that range."""
    if torch.is_tensor(data):
        return data[start:stop]
    return take(data, torch.arange(start, stop))


def _check_in_order(loader):
    """Raises unless `loader` visits its dataset in storage order (the rows of the embeddings
    must follow the pool's order): its sampler, and the sampler inside a BatchSampler."""
    samplers = [loader.sampler]
    if loader.batch_sampler is not None:
        if not isinstance(loader.batch_sampler, BatchSampler):
            raise ValueError(f"the DataLoader batches with a custom "
                             f"{type(loader.batch_sampler).__name__}, whose order cannot be "
                             f"checked; pass one with shuffle=False (or the Dataset itself)")
        samplers.append(loader.batch_sampler.sampler)
    for sampler in samplers:
        if not isinstance(sampler, (SequentialSampler, _InfiniteConstantSampler)):
            raise ValueError(f"the DataLoader draws with {type(sampler).__name__}, so its "
                             f"batches would not follow the pool's order; pass one with "
                             f"shuffle=False (or the Dataset itself)")


def iter_batches(data, batch_size, device):
    """Input batches [n, ...] of `data` on `device`, in storage order. Items may be inputs or
    (inputs, labels, ...) tuples; a DataLoader keeps its own batch size."""
    check_int(batch_size, "batch_size", minimum=1)
    if torch.is_tensor(data):
        batches = data.split(batch_size)
    elif isinstance(data, DataLoader):
        _check_in_order(data)
        batches = data
    else:
        batches = DataLoader(data, batch_size=batch_size)
    for batch in batches:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        yield x.to(device)
