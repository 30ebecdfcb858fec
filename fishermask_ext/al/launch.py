"""`fishermask run` under torchrun: one process group from torchrun's environment.

    torchrun --nproc-per-node=2 -m fishermask_ext.al.cli run --dataset digits

Every rank trains the same model on the same labels (same seeds, so the same weights); the
Fisher strategies then embed only their rank's slice of the pool and select sharded
(fishermask_ext.distributed), so every rank picks the same points. Rank 0 writes the results
folder; the other ranks write theirs to a scratch folder that is deleted at the end.
"""
import os
import tempfile
from contextlib import contextmanager

import torch

__all__ = ["torchrun_rank", "results_folder"]


def torchrun_rank(device):
    """This process's rank when torchrun started it (its process group then initialised: NCCL
    with one GPU per rank when `device` is CUDA, else gloo), or None outside torchrun."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or "RANK" not in os.environ:
        return None
    import torch.distributed as dist
    if not dist.is_initialized():
        cuda = torch.device(device).type == "cuda"
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if cuda else "gloo")
    return dist.get_rank()


@contextmanager
def results_folder(out, rank, resume):
    """`out` on rank 0 (or outside torchrun), a scratch folder on the other ranks."""
    if rank in (None, 0):
        yield out
        return
    if resume:
        raise ValueError("--resume is not supported under torchrun (only rank 0 keeps the "
                         "results folder); run the resume in one process")
    with tempfile.TemporaryDirectory(prefix=f"fishermask-rank{rank}-") as scratch:
        yield os.path.join(scratch, os.path.basename(os.path.normpath(out)))
