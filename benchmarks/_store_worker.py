"""One selection of benchmarks/bench_scale.py's store case, in a process of its own so that its
peak RSS is the selection's: `store` selects straight from the embedding store (chunks read
with pread), `ram` reads the whole store into a tensor first. Writes <out>.json."""
import json
import resource
import sys
import time

import torch

import fishermask_ext as fm


def _peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024     # Linux: KiB


def main():
    path, K, mode, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    store = fm.open_store(path)
    N = len(store)
    labeled = torch.arange(N) % 100 == 0                  # 1 % of the pool labeled
    pool = store.read_rows(0, N) if mode == "ram" else store
    base = _peak_rss_bytes()                  # imports, the mask (and the pool, in RAM mode)
    t0 = time.perf_counter()
    picks, gains = fm.select_from_pool(pool, K, labeled, return_gains=True)
    seconds = time.perf_counter() - t0
    with open(out, "w") as f:
        json.dump(dict(mode=mode, seconds=seconds, picks=picks.tolist(), gains=gains.tolist(),
                       base_rss=base, peak_rss=_peak_rss_bytes()), f)


if __name__ == "__main__":
    main()
