"""Progress bars of the backend: tqdm when it is installed (the `al` extra), else none."""
import warnings
from contextlib import contextmanager

__all__ = ["progress_bar"]


@contextmanager
def progress_bar(show, total, unit, desc):
    """on_step(t, n) for ops.loop: a tqdm bar when `show` (and tqdm is installed), else None."""
    if not show:
        yield None
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:
        warnings.warn("progress=True needs tqdm (pip install tqdm); running without a bar")
        yield None
        return
    with tqdm(total=total, unit=unit, desc=desc) as bar:
        yield lambda t, n: bar.update(1)
