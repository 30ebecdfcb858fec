"""Progress bars of the long library calls (steps A, C and E; every layer), by one rule:
progress=None shows a bar when stderr is a terminal, and only once the call has run DELAY_S (a
short call stays quiet, a long one on a small pool no longer runs for minutes without a word);
True shows it at once, False never. Without tqdm (only the `al` extra installs it) there is no
bar; progress=True then warns once, since the caller asked for one."""
import sys
import warnings
from contextlib import contextmanager

__all__ = ["DELAY_S", "progress_bar", "shows_bar", "step_bar", "NoBar"]

DELAY_S = 3.0


class NoBar:
    """Stands in for a tqdm bar that is off or not installed."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n):
        pass

    def set_postfix_str(self, s):
        pass

    def refresh(self):
        pass


def _tqdm(progress):
    """tqdm when a bar is wanted under the rule above and tqdm imports, else None."""
    if not (sys.stderr.isatty() if progress is None else progress):
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        if progress:
            warnings.warn("progress=True needs tqdm (pip install tqdm); running without a bar")
        return None
    return tqdm


def shows_bar(progress):
    """True when `progress` (None, True or False) gives a bar here and now."""
    return _tqdm(progress) is not None


def progress_bar(total, progress, desc, unit):
    """A tqdm bar over `total` items under the rule above, or a NoBar."""
    tqdm = _tqdm(progress)
    if tqdm is None:
        return NoBar()
    return tqdm(total=total, unit=unit, desc=desc, delay=DELAY_S if progress is None else 0)


@contextmanager
def step_bar(progress, total, unit, desc):
    """on_step(t, n) for ops.loop over a progress_bar, or None when there is no bar."""
    bar = progress_bar(total, progress, desc, unit)
    if isinstance(bar, NoBar):
        yield None
        return
    with bar:
        yield lambda t, n: bar.update(1)
