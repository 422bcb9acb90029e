"""Progress on stderr: a bar on a terminal, one line per stage when stderr is a file, a pipe or a notebook."""

import sys
import time


def progress_bar(total, description, unit="img"):
    """An object to call ``update(count)`` on as work is done, and ``close()`` on when the stage ends.

    Parameters
    ----------
    total : int
        Work in the stage (images).
    description : str
        The stage: "checking", "writing".
    unit : str

    Returns
    -------
    tqdm.tqdm or StageLine
        On a terminal, a tqdm bar, redrawn in place. Anywhere else (a log file, a
        pipe, a notebook), a :class:`StageLine`: a bar redrawn with carriage returns
        would fill a log with half-drawn lines.
    """
    if getattr(sys.stderr, "isatty", lambda: False)():
        from tqdm import tqdm

        return tqdm(total=total, desc=description, unit=unit, smoothing=0.1)
    return StageLine(total, description, unit)


class StageLine:
    """One line on stderr when a stage ends: ``checking: 15,000 of 15,000 img in 12.3 s``."""

    def __init__(self, total, description, unit):
        self.total, self.description, self.unit = total, description, unit
        self.done = 0
        self.started = time.perf_counter()

    def update(self, count):
        self.done += count

    def close(self):
        if sys.stderr is None:  # pythonw: no console at all
            return
        seconds = time.perf_counter() - self.started
        print(f"{self.description}: {self.done:,} of {self.total:,} {self.unit} in {seconds:.1f} s", file=sys.stderr,
              flush=True)
