"""One rank of a distributed test world (started by tests/distributed/test_sharded_select.py).

argv: scenario, output folder. Environment: RANK, WORLD_SIZE, MASTER_PORT (127.0.0.1 only).
Writes <output>/<rank>.json: the results, or the exception this rank raised."""
import datetime
import json
import os
import sys
import traceback

import torch
import torch.distributed as dist

import fishermask_ext as fm
from fishermask_ext import distributed as fmd


def pool(N, C=3, D=7, n_L=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(N, C, D, generator=g, dtype=torch.float64), \
        torch.randn(n_L, C, D, generator=g, dtype=torch.float64)


def cut(X, sizes, rank):
    start = sum(sizes[:rank])
    return X[start:start + sizes[rank]]


def equal(rank, world, sizes, lab_sizes):
    """Distributed picks and gains, and (on every rank) single-process picks of the same pool."""
    out = []
    X, L = pool(sum(sizes), n_L=sum(lab_sizes))
    for dtype in (torch.float64, torch.float32):
        for b in (0, 1):
            for with_labeled in (False, True):
                Xd, Ld = X.to(dtype), L.to(dtype)
                kw = dict(lamb=0.05, backward_steps=b)
                lab = dict(labeled=cut(Ld, lab_sizes, rank)) if with_labeled else {}
                got, gains = fmd.select_batch(cut(Xd, sizes, rank), 9, return_gains=True,
                                              **lab, **kw)
                want, want_gains = fm.select_batch(Xd, 9, labeled=Ld if with_labeled else None,
                                                   return_gains=True, **kw)
                twin = fm.select_batch(Xd, 9, labeled=Ld if with_labeled else None,
                                       return_gains=True, backend="torch", **kw)
                out.append(dict(case=[str(dtype), b, with_labeled], got=got.tolist(),
                                want=want.tolist(), gains=gains.tolist(),
                                want_gains=want_gains.tolist(), twin_gains=twin[1].tolist()))
    return out


def factored_equal(rank, world, sizes):
    """Factored shards (labeled points factored too) pick what one process picks on the dense
    pool."""
    g = torch.Generator().manual_seed(5)
    N, C, d, Dr = sum(sizes) + 6, 3, 4, 2
    E = fm.FactoredEmbeddings(torch.randn(N, C, C, generator=g, dtype=torch.float64),
                              torch.randn(N, d, generator=g, dtype=torch.float64),
                              torch.randn(N, C, Dr, generator=g, dtype=torch.float64),
                              columns=torch.randperm(C * d + Dr, generator=g))
    U, L = E[6:], E[:6]
    lab = L[:3] if rank == 0 else L[3:] if rank == world - 1 else L[:0]
    got, gains = fmd.select_batch(cut(U, sizes, rank), 7, labeled=lab, backward_steps=1,
                                  return_gains=True)
    want, want_gains = fm.select_batch(U.dense(), 7, labeled=L.dense(), backward_steps=1,
                                       return_gains=True)
    twin = fm.select_batch(U.dense(), 7, labeled=L.dense(), backward_steps=1, return_gains=True,
                           backend="torch")
    return [dict(case="factored", got=got.tolist(), want=want.tolist(), gains=gains.tolist(),
                 want_gains=want_gains.tolist(), twin_gains=twin[1].tolist())]


class FailingShard:
    """An embedding-store-like shard whose reads fail (or whose process dies) after `after`."""
    def __init__(self, X, after, die):
        self.X, self.after, self.die, self.reads = X, after, die, 0
        self.shape, self.dtype = tuple(X.shape), X.dtype

    def read_rows(self, start, stop):
        self.reads += 1
        if self.reads > self.after:
            if self.die:
                os._exit(3)                 # the rank dies without a word
            raise OSError("disk read failed (injected)")
        return self.X[start:stop]


def failing(rank, world, die):
    X, _ = pool(30)
    mine = cut(X, [10] * world, rank)
    shard = FailingShard(mine, after=4, die=die) if rank == 1 else mine
    fmd.select_batch(shard, 8, lamb=0.1)
    return "finished"


def mismatch(rank, world):
    X, _ = pool(12, D=7 + (rank == 1))
    fmd.select_batch(X, 3)
    return "finished"


def _strategy_setup():
    from fishermask_ext import strategies
    torch.manual_seed(0)
    model = fm.get_model("mlp", num_classes=4, in_features=12).double()
    g = torch.Generator().manual_seed(1)
    pool = torch.randn(37, 12, generator=g, dtype=torch.float64)
    labeled = torch.zeros(37, dtype=torch.bool)
    labeled[[0, 5, 20, 33]] = True
    made = {"fishermask": dict(pct_top=0.3, n_samples=25),
            "fishermask-ref": dict(pct_top=0.3, n_samples=25, fish_init=False,
                                   backward_steps=1),
            "fishermask_reference": dict(pct_top=0.3, n_samples=25),   # step A: first images
            "bait": {}}
    return {name: (strategies.get(name.split("-")[0], seed=3, batch_size=8, **kw), model, pool,
                   labeled) for name, kw in made.items()}


def strategy_alone():
    """Before the process group exists: the single-process picks."""
    return {name: s.select(m, p, lab, 6).tolist()
            for name, (s, m, p, lab) in _strategy_setup().items()}


def strategy(rank, world, alone):
    """The same strategies with a process group of `world` ranks: sharded step A, embeddings of
    this rank's slice only, sharded selection; picks must equal the single-process ones."""
    got = {name: s.select(m, p, lab, 6).tolist()
           for name, (s, m, p, lab) in _strategy_setup().items()}
    return dict(got=got, alone=alone)


def main():
    scenario, out_dir = sys.argv[1], sys.argv[2]
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    before = strategy_alone() if scenario == "strategy" else None
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{os.environ['MASTER_PORT']}",
                            rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=30))
    try:
        args = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
        if before is not None:
            args["alone"] = before
        result = dict(ok=globals()[scenario](rank, world, **args))
    except Exception as exc:
        result = dict(error=type(exc).__name__, message=str(exc),
                      trace=traceback.format_exc()[-2000:])
    with open(os.path.join(out_dir, f"{rank}.json"), "w") as f:
        json.dump(result, f)
    if "ok" in result:     # gloo's threads torn down at exit without this can abort
        dist.destroy_process_group()
    else:                  # after a failure destroying could wait on a dead peer: leave now
        os._exit(0)


if __name__ == "__main__":
    main()
