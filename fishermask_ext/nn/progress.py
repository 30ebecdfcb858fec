"""Progress bars of the long library calls (steps A and C), by one rule: progress=None shows a
bar when stderr is a terminal, and only once the call has run DELAY_S (a short call stays
quiet, a long one on a small pool no longer runs for minutes without a word); True shows it at
once, False never. Without tqdm (only the `al` extra installs it) there is no bar."""
import sys

__all__ = ["DELAY_S", "progress_bar", "NoBar"]

DELAY_S = 3.0


class NoBar:
    """Stands in for a tqdm bar that is off or not installed."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n):
        pass

    def refresh(self):
        pass


def progress_bar(total, progress, desc, unit):
    """A tqdm bar over `total` items under the rule above, or a NoBar."""
    auto = progress is None
    if not (sys.stderr.isatty() if auto else progress):
        return NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return NoBar()
    return tqdm(total=total, unit=unit, desc=desc, delay=DELAY_S if auto else 0)
