"""The GPU check's distributed stage: a world of one NCCL rank on 127.0.0.1 must pick what
fishermask_ext.select_batch picks on the same CUDA pool (benchmarks/gpu_check.sh)."""
import datetime
import os
import socket

import torch
import torch.distributed as dist

import fishermask_ext as fm
from fishermask_ext import distributed as fmd

with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
torch.cuda.set_device(0)
dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1,
                        timeout=datetime.timedelta(seconds=60))
g = torch.Generator().manual_seed(0)
for dtype in (torch.float32, torch.float64):
    X = torch.randn(5000, 10, 300, generator=g).to("cuda", dtype)
    L = torch.randn(40, 10, 300, generator=g).to("cuda", dtype)
    for b in (0, 1):
        got = fmd.select_batch(X, 50, labeled=L, lamb=0.1, backward_steps=b)
        want = fm.select_batch(X, 50, labeled=L, lamb=0.1, backward_steps=b)
        assert got.tolist() == want.tolist(), (dtype, b)
        print(f"nccl world of 1, {dtype}, b={b}: 50 picks equal select_batch's")
dist.destroy_process_group()
