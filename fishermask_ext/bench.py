"""`fishermask bench`: time selection on a shape of your own, from the installed package alone.

    fishermask bench --shape 20000,10,1402 --budget 20                    # dense, float32, CPU
    fishermask bench --shape 20000,10,1402 --budget 20 --factored --device cuda --json b.json

A random pool of that shape (dense, or FactoredEmbeddings with D = C·d̄ + D_r); select_batch
with backend="native" and with backend="torch" (the PyTorch twin) on the same rows, their picks
compared; the device's copy rate and float64 GEMM rate measured in the same run; one table:
time, steps/s, and the GB/s and GFLOP/s of the counted work (select/counts.py) against those
two rates, native against twin. The pytest-benchmark suite is the source checkout's
benchmarks/ (python benchmarks/run.py).
"""
import json
import os
import time

import torch

from ._version import __version__
from ._checks import check_budget, check_device, check_int
from ._files import write_atomic
from ._progress import progress_bar
from .ops import native_available
from .select import select_batch
from .select.counts import selection_counts
from .store import FactoredEmbeddings

__all__ = ["add_parser", "run", "parse_shape", "device_rates", "random_pool", "measure"]

DTYPES = {"float32": torch.float32, "float64": torch.float64}
# Peak yardsticks: a copy far beyond the last-level cache, and a float64 GEMM big enough to run
# at full rate; a GPU needs larger ones to fill it.
RATE_SIZES = {"cpu": (128 << 20, 1024), "cuda": (1 << 30, 8192)}   # (bytes copied, GEMM side)
WARM_ROWS = 256         # the warm-up selection's rows: pays one-time costs before any timing


def add_parser(sub):
    b = sub.add_parser("bench", help="time selection on a random pool of a given shape, native "
                                     "kernels against the PyTorch twin",
                       description=__doc__.split("\n\n")[2].replace("\n", " "))
    b.add_argument("--shape", required=True, metavar="N,C,D",
                   help="the pool: N candidates, C classes, D columns (e.g. 20000,10,1402)")
    b.add_argument("--budget", type=int, required=True, metavar="K", help="K, the number of points to pick")
    b.add_argument("--device", default="cpu", help="cpu or cuda[:index] (default: cpu)")
    b.add_argument("--dtype", choices=DTYPES, default="float32",
                   help="the pool's storage type (default: float32)")
    b.add_argument("--factored", action="store_true",
                   help="a FactoredEmbeddings pool: D = C·d̄ + D_r (see --d-bar)")
    b.add_argument("--d-bar", type=int, default=None, metavar="D_BAR",
                   help="d̄ of --factored (default: D // C, the rest D_r = D − C·d̄)")
    b.add_argument("--repeats", type=int, default=1, metavar="R",
                   help="timed calls of each engine; the best counts (default: 1)")
    b.add_argument("--twin-rows", type=int, default=None, metavar="M",
                   help="time the twin on the first M rows only (native is timed on them too, "
                        "for the ratio); 0: no twin (default: all N rows)")
    b.add_argument("--json", default=None, metavar="PATH", help="also write the figures here")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")


def parse_shape(text):
    """(N, C, D) from "N,C,D", or a ValueError saying what is wrong."""
    parts = text.replace(" ", "").split(",")
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"--shape must be three integers > 0, N,C,D (e.g. 20000,10,1402), "
                         f"got {text!r}")
    return tuple(int(p) for p in parts)


def _factors(C, D, d_bar, factored):
    """(d̄, D_r) of a factored pool, or None for a dense one."""
    if not factored:
        if d_bar is not None:
            raise ValueError("--d-bar is a factored pool's: add --factored, or drop --d-bar")
        return None
    d_bar = D // C if d_bar is None else d_bar
    if not 1 <= d_bar <= D // C:
        raise ValueError(f"--d-bar must be between 1 and D // C = {D // C} (D = C·d̄ + D_r, "
                         f"D_r >= 0), got {d_bar}" + ("; make D >= C" if D < C else ""))
    return d_bar, D - C * d_bar


def random_pool(N, C, D, dtype, device, factors=None, seed=0):
    """A random [N, C, D] pool: a tensor, or FactoredEmbeddings with factors = (d̄, D_r)."""
    g = torch.Generator(device=device).manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g, dtype=dtype, device=device)  # noqa: E731
    if factors is None:
        return r(N, C, D)
    d_bar, d_rest = factors
    return FactoredEmbeddings(r(N, C, C), r(N, d_bar), r(N, C, d_rest) if d_rest else None)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best(fn, device, repeats):
    """(best wall seconds, output of the last call) of `repeats` synchronised calls."""
    best, out = float("inf"), None
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        out = fn()
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return best, out


def device_rates(device, sizes=None):
    """{"copy_GBs", "dgemm_GFLOPs"}: the device's copy rate (bytes read + written per second)
    and float64 GEMM rate, each the best of 3 after a warm-up call."""
    nbytes, n = sizes or RATE_SIZES[device.type]
    a = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    b = torch.empty_like(a)
    b.copy_(a)
    copy_s, _ = _best(lambda: b.copy_(a), device, 3)
    x = torch.randn(n, n, dtype=torch.float64, device=device)
    x @ x
    gemm_s, _ = _best(lambda: x @ x, device, 3)
    return dict(copy_GBs=2 * nbytes / copy_s / 1e9, dgemm_GFLOPs=2 * n ** 3 / gemm_s / 1e9)


def _plan(N, K, twin_rows, native):
    """[(engine, rows)] to time: native on all rows; the twin on `twin_rows`, and native again
    there when that is fewer, so that every ratio compares the same rows."""
    runs = [("native", N)] if native else []
    if twin_rows:
        if native and twin_rows < N:
            runs.append(("native", twin_rows))
        runs.append(("twin", twin_rows))
    return runs


def _has_native(pool, device):
    """Whether select_batch has native kernels for `pool` on `device`."""
    factored = isinstance(pool, FactoredEmbeddings)
    return native_available(device, "factored_step" if factored else "greedy_select")


def measure(pool, K, device, repeats=1, twin_rows=None, progress=None):
    """(rates, [run dicts]) of select_batch on `pool` (see the module docstring)."""
    N = pool.shape[0]
    runs = _plan(N, K, N if twin_rows is None else twin_rows, _has_native(pool, device))
    if not runs:
        raise ValueError(f"no native kernels for {device} and --twin-rows 0: nothing to time")
    with progress_bar(2 + len(runs) * (1 + repeats), progress, "bench", "call") as bar:
        before = device_rates(device)
        bar.update(1)
        out = []
        for engine, rows in runs:
            backend = "native" if engine == "native" else "torch"
            part = pool[:rows]
            select_batch(pool[:min(rows, WARM_ROWS)], min(K, 2), backend=backend,
                         progress=False)
            bar.update(1)
            best = float("inf")
            for _ in range(repeats):
                seconds, picks = _best(lambda: select_batch(part, K, backend=backend,
                                                            progress=False), device, 1)
                best = min(best, seconds)
                bar.update(1)
            out.append(dict(engine=engine, rows=rows, seconds=best, picks=picks.tolist()))
        # Peaks before and after, the better of each: a short measurement that other work on a
        # shared machine slowed would otherwise understate them and overstate every share.
        after = device_rates(device)
        bar.update(1)
    return {k: max(before[k], after[k]) for k in before}, out


def _figures(runs, rates, shape, K, itemsize, device, factors):
    """Each run with its counted work and the rates it achieved, and its ratio to the twin on
    the same rows (None where the twin did not run on them)."""
    _, C, D = shape
    twin = {r["rows"]: r["seconds"] for r in runs if r["engine"] == "twin"}
    for r in runs:
        work = selection_counts(r["rows"], C, D, K, itemsize, round_trip=device.type == "cuda",
                                factors=factors)
        s = r["seconds"]
        r.update(bytes=work["bytes"], flops=work["flops"], steps_per_s=work["steps"] / s,
                 GBs=work["bytes"] / s / 1e9, GFLOPs=work["flops"] / s / 1e9)
        r.update(of_copy=r["GBs"] / rates["copy_GBs"],
                 of_dgemm=r["GFLOPs"] / rates["dgemm_GFLOPs"],
                 twin_over=twin[r["rows"]] / s if r["rows"] in twin else None)
    return runs


def _agreement(runs):
    """(ok, one line) comparing native's and the twin's picks on the same rows."""
    twin = {r["rows"]: r["picks"] for r in runs if r["engine"] == "twin"}
    pairs = [(r["rows"], r["picks"], twin[r["rows"]]) for r in runs
             if r["engine"] == "native" and r["rows"] in twin]
    if not pairs:
        return True, "picks: not compared (only one engine ran)"
    for rows, mine, theirs in pairs:
        if mine != theirs:
            t = next((i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b), len(mine))
            return False, f"picks: native and twin DIFFER on {rows:,} rows, from pick {t}"
    return True, f"picks: native and twin pick the same {len(pairs[0][1])} points, in order"


def _table(runs):
    cols = ("engine", "rows", "time s", "steps/s", "GB/s", "% copy", "GFLOP/s", "% DGEMM",
            "twin / native")
    lines = [[r["engine"], f"{r['rows']:,}", f"{r['seconds']:.3f}", f"{r['steps_per_s']:.3g}",
              f"{r['GBs']:.1f}", f"{r['of_copy']:.0%}", f"{r['GFLOPs']:.1f}",
              f"{r['of_dgemm']:.0%}",
              "-" if r["twin_over"] is None else f"{r['twin_over']:.2f}x"] for r in runs]
    width = [max(len(x) for x in col) for col in zip(cols, *lines)]
    return ["  ".join(x.rjust(w) if i else x.ljust(w) for i, (x, w) in enumerate(zip(row, width)))
            for row in (cols, *lines)]


def _describe(shape, K, dtype, device, factors, repeats):
    N, C, D = shape
    pool = ("dense" if factors is None else
            f"factored (d̄ = {factors[0]}, D_r = {factors[1]})")
    threads = torch.get_num_threads()
    return (f"fishermask bench: select K = {K} of a random {pool} pool N = {N:,}, C = {C}, "
            f"D = {D:,}, {dtype} on {device}\n{threads} thread{'s' * (threads != 1)}, "
            f"fishermask_ext {__version__}, torch {torch.__version__}; the best of {repeats} "
            f"call{'s' * (repeats != 1)} of each engine after a warm-up")


def run(args):
    """The `fishermask bench` command; returns 0, or 1 when native and twin pick differently."""
    shape = parse_shape(args.shape)
    N, C, D = shape
    K = check_budget(args.budget, N, "pool rows (--shape N)")
    device = check_device(args.device, "--device")
    if device.type not in RATE_SIZES:
        raise ValueError(f"--device {args.device}: bench runs on cpu or cuda")
    factors = _factors(C, D, args.d_bar, args.factored)
    check_int(args.repeats, "--repeats", minimum=1)
    twin_rows = N if args.twin_rows is None else args.twin_rows
    if twin_rows and not K <= twin_rows <= N:
        raise ValueError(f"--twin-rows must be 0 (no twin) or between the budget {K} and "
                         f"N = {N}, got {twin_rows}")
    if args.json and not os.path.isdir(os.path.dirname(os.path.abspath(args.json))):
        raise ValueError(f"--json {args.json}: its folder does not exist; create it first")
    dtype = DTYPES[args.dtype]
    pool = random_pool(N, C, D, dtype, device, factors)
    rates, runs = measure(pool, K, device, args.repeats, twin_rows,
                          progress=False if args.no_progress else None)
    _figures(runs, rates, shape, K, dtype.itemsize, device, factors)
    ok, picks = _agreement(runs)
    lines = [_describe(shape, K, args.dtype, device, factors, args.repeats),
             f"measured before and after on {device} (the better): copy {rates['copy_GBs']:.1f} "
             f"GB/s (bytes read + written), float64 GEMM {rates['dgemm_GFLOPs']:.1f} GFLOP/s",
             "rates: the counted work of the whole selection (Fisher, initial A and B, K steps;\n"
             "fishermask_ext/select/counts.py) over its time", "", *_table(runs), "", picks]
    if not _has_native(pool, device):
        lines.append(f"no native kernels for {device}: the twin only (python -m fishermask_ext "
                     f"info says why)")
    print("\n".join(lines))
    if args.json:
        doc = dict(shape=dict(N=N, C=C, D=D), budget=K, dtype=args.dtype, device=str(device),
                   factors=None if factors is None else dict(d_bar=factors[0], d_rest=factors[1]),
                   threads=torch.get_num_threads(), version=__version__, torch=torch.__version__,
                   rates=rates, runs=runs, picks_agree=ok)
        write_atomic(args.json, json.dumps(doc, indent=1))
        print(f"wrote {args.json}")
    return 0 if ok else 1
