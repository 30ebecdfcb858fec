"""The table and the plot of a benchmarks/run.py run, from pytest-benchmark's JSON.

    write("results/bench/pytest-benchmark.json", "results/bench")   # results.md, .json, .png

Every benchmark is one row (its minimum, median and mean time over its rounds, and the figures
it recorded in extra_info). Benchmarks that record `method`, `dtype` and `pool_size` (the
selection benchmarks: native, twin, direct) also make the plot: time against pool size, one
line per method and dtype.
"""
import os

from fishermask_ext._files import atomic_path
from fishermask_ext.al.io import read_json, write_atomic, write_json

__all__ = ["rows", "markdown", "write", "plot"]

PLOT_KEYS = ("method", "dtype", "pool_size")
COLORS = {"native": "C0", "twin": "C1", "direct": "C2"}   # one colour per method, any dtype
# One look per dtype, apart in line, marker and fill: the two dtypes' lines often overlap.
DTYPE_STYLES = {"float32": dict(linestyle="-", marker="o"),
                "float64": dict(linestyle="--", marker="s", markerfacecolor="none",
                                markersize=9)}


def rows(raw):
    """One dict per benchmark of a pytest-benchmark JSON document, in run order."""
    return [dict(name=b["name"], file=b["fullname"].split("::")[0], group=b.get("group"),
                 min_s=b["stats"]["min"], median_s=b["stats"]["median"],
                 mean_s=b["stats"]["mean"], rounds=b["stats"]["rounds"],
                 extra=b.get("extra_info", {})) for b in raw["benchmarks"]]


def _shown(value):
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def markdown(table, header):
    """The markdown table of `rows`, under the lines of `header`."""
    lines = [*header, "", "| group | benchmark | min s | median s | mean s | rounds | figures |",
             "|---|---|---|---|---|---|---|"]
    for r in table:
        figures = ", ".join(f"{k}={_shown(v)}" for k, v in r["extra"].items()
                            if k not in PLOT_KEYS and v is not None)
        lines.append(f"| {r['group'] or ''} | {r['name']} | {r['min_s']:.4g} | "
                     f"{r['median_s']:.4g} | {r['mean_s']:.4g} | {r['rounds']} | {figures} |")
    return "\n".join(lines) + "\n"


def series(table):
    """{(method, dtype): [(pool size, min seconds, extra), ...] sorted by pool size}."""
    out = {}
    for r in table:
        if all(k in r["extra"] for k in PLOT_KEYS):
            key = (r["extra"]["method"], r["extra"]["dtype"])
            out.setdefault(key, []).append((r["extra"]["pool_size"], r["min_s"], r["extra"]))
    return {k: sorted(v, key=lambda p: p[0]) for k, v in sorted(out.items())}


def plot(table, path, title):
    """Write the time-against-pool-size PNG to `path`; False (nothing written) without points."""
    lines = series(table)
    if not lines:
        return False
    # Imported here: matplotlib is the al extra's, and choosing Agg at import time would change
    # the backend of a notebook that only imports this module.
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=100)
    for (method, dtype), points in lines.items():
        ax.plot([p[0] for p in points], [p[1] for p in points], color=COLORS.get(method),
                label=f"{method} {dtype}", **DTYPE_STYLES.get(dtype, dict(marker="^")))
    shapes = sorted({f"C={e['C']} D={e['D']} K={e['K']}" for pts in lines.values()
                     for _, _, e in pts if all(k in e for k in "CDK")})
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())   # N as plain numbers
    ax.set_xticks(sorted({p[0] for pts in lines.values() for p in pts}))
    ax.set_xlabel("pool size N")
    ax.set_ylabel("select time, s (min over rounds)")
    ax.set_title(f"{title}\n{'; '.join(shapes)}", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:           # the temporary name has no .png: say the format
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return True


def write(raw_path, out_dir, command=None, quick=False):
    """results.md, results.json and (with selection points) select-time.png in `out_dir` from
    the pytest-benchmark JSON at `raw_path`; returns {kind: path} of what was written."""
    raw = read_json(raw_path)
    table = rows(raw)
    machine = raw.get("machine_info", {})
    sizes = "smoke sizes (--quick)" if quick else "full sizes"
    header = [f"# benchmarks/run.py: {len(table)} benchmarks, {sizes}", "",
              f"`{' '.join(command or [])}` on {machine.get('cpu', {}).get('brand_raw', '?')}, "
              f"{raw.get('datetime', '')}, commit {raw.get('commit_info', {}).get('id', '?')}. "
              f"Times are seconds per call; ratios only between rows of this one run."]
    paths = dict(markdown=os.path.join(out_dir, "results.md"),
                 json=os.path.join(out_dir, "results.json"))
    write_atomic(paths["markdown"], markdown(table, header))
    write_json(paths["json"], dict(command=command, quick=quick, datetime=raw.get("datetime"),
                                   machine=machine, commit=raw.get("commit_info"),
                                   benchmarks=table))
    png = os.path.join(out_dir, "select-time.png")
    if plot(table, png, f"selection time against pool size ({sizes})"):
        paths["plot"] = png
    return paths
