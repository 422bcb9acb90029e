"""What a run prints: banners, progress that stays readable in a log file, the summary line, quiet TensorFlow start-up.

On a terminal or in a notebook a person watches the output live, so loops show
progress bars; redirected to a file or a pipe, each epoch is one line (Keras
``verbose=2``) and each long loop one line when it ends, with no carriage returns.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BANNER_WIDTH = 76  # a banner's text wraps here, so it fits an 80-column terminal


def in_notebook() -> bool:
    """True inside a Jupyter kernel (the notebook's cells are this process's code)."""
    return "ipykernel" in sys.modules


def interactive() -> bool:
    """True when a person watches the output live: a terminal or a notebook."""
    return in_notebook() or sys.stdout.isatty()


def keras_verbose() -> str | int:
    """``verbose=`` for ``fit``/``evaluate``: progress bars on a terminal or in a notebook,
    one line per epoch (``2``) when the output goes to a file or a pipe."""
    return "auto" if interactive() else 2


def banner(message: str) -> None:
    """Print ``message`` in a box that is hard to miss in a long log (lines wrapped at 76 columns).

    Paths and URLs are never split, so they can be copied from the box whole.
    """
    lines = [wrapped for line in message.strip().splitlines()
             for wrapped in (textwrap.wrap(line, BANNER_WIDTH, break_long_words=False, break_on_hyphens=False)
                             or [""])]
    width = max(len(line) for line in lines)
    rule = "+" + "-" * (width + 2) + "+"
    print("\n".join([rule, *(f"| {line.ljust(width)} |" for line in lines), rule]), flush=True)


def count(number: int, noun: str) -> str:
    """``count(1, "epoch")`` -> ``"1 epoch"``, ``count(3, "epoch")`` -> ``"3 epochs"``."""
    return f"{number:,} {noun}" + ("" if number == 1 else "s")


def summary_line(title: str, **values: Any) -> str:
    """One line such as ``lab01 | softmax_accuracy=0.9244 | cnn_accuracy=0.9912 | total_s=81.2``."""
    parts = [title]
    for key, value in values.items():
        if isinstance(value, float):
            # Seconds always with one decimal, rates and the like below 10 with four.
            value = f"{value:.1f}" if key.endswith("_s") or abs(value) >= 10 else f"{value:.4f}"
        parts.append(f"{key}={value}")
    return " | ".join(parts)


def progress(iterable=None, *, total: int | None = None, desc: str | None = None, unit: str = "it",
             unit_scale: bool = False, leave: bool = True):
    """A progress bar on a terminal or in a notebook; in a log file, one line when the loop ends.

    Returns an object with tqdm's interface (iterate over it, or call ``update(n)``;
    a context manager): a widget in a notebook, a text bar on stdout on a terminal,
    and in a log file a quiet stand-in that prints ``desc: N unit in S s, R unit/s``
    at the end (no carriage returns). ``unit_scale`` writes 1.2M for 1,200,000
    (bytes, say); ``leave=False`` clears a finished bar from the terminal.
    """
    if not interactive():
        return _LoggedProgress(iterable, total=total, desc=desc, unit=unit, unit_scale=unit_scale)
    options = {"total": total, "desc": desc, "unit": unit, "unit_scale": unit_scale, "leave": leave}
    if in_notebook():
        try:
            import ipywidgets  # noqa: F401  (tqdm.notebook needs it; without it, a text bar on stdout)
            from tqdm.notebook import tqdm
        except ImportError:
            from tqdm import tqdm

            return tqdm(iterable, file=sys.stdout, **options)
        return tqdm(iterable, **options)
    from tqdm import tqdm

    return tqdm(iterable, file=sys.stdout, mininterval=0.5, **options)


class _LoggedProgress:
    """The part of tqdm's interface the scripts use, printing one line at the end (for log files)."""

    def __init__(self, iterable, *, total, desc, unit, unit_scale=False) -> None:
        self.iterable, self.desc, self.unit, self.unit_scale = iterable, desc or "progress", unit, unit_scale
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.n = 0
        self.start = time.perf_counter()
        self._closed = False

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.n += 1
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            seconds = time.perf_counter() - self.start
            amount = self._amount(self.n)
            rate = f", {self._amount(self.n / seconds)}/s" if seconds > 0 else ""
            print(f"{self.desc}: {amount} in {seconds:.1f} s{rate}", flush=True)

    def _amount(self, value: float) -> str:
        if self.unit_scale:
            from tqdm import tqdm

            return f"{tqdm.format_sizeof(value)}{self.unit}"
        return f"{value:,.0f} {self.unit}"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# Start-up notices TensorFlow 2.16-2.21 writes while it is imported: informational
# (I...) lines, absl's note that it logs to stderr, and the CPU-feature line's second
# line. Anything else written during the import (a warning, an error) is shown.
STARTUP_NOISE = re.compile(
    r"^(I\d{4} |WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\.)"
)


# CUDA's probe, when TensorFlow first lists its devices: an error only where there is an
# NVIDIA device to find (a broken driver shows this way); noise on every other machine.
NO_GPU_PROBE = re.compile(r"^E\d{4} .*failed call to cuInit")


def has_nvidia_device() -> bool:
    """Whether this machine has an NVIDIA device node (``/dev/nvidia0``, ...) for CUDA to find."""
    return any(Path("/dev").glob("nvidia[0-9]*"))


@contextmanager
def quiet_tensorflow() -> Iterator[None]:
    """Hide TensorFlow's start-up notices while the block imports it; keep its warnings and errors.

    Wrap the script's first ``import keras`` / ``import tensorflow`` in it::

        with console.quiet_tensorflow():
            import keras

    TensorFlow's C++ libraries write their notices to file descriptor 2 before
    ``TF_CPP_MIN_LOG_LEVEL`` is read, so during the block fd 2 goes to a temporary
    file; afterwards the captured lines are written to stderr, less the notices
    in :data:`STARTUP_NOISE`. At the end of the block TensorFlow lists its physical
    devices (which configures nothing, so strategies can still be set up), and CUDA's
    failed probe is hidden too on a machine without an NVIDIA device. When the block
    fails, every captured line is shown, so the reason is never hidden (but not for
    Ctrl-C, whose one line would be buried). ``TF_CPP_MIN_LOG_LEVEL`` is set to 2
    unless you set it, which hides TensorFlow's later informational lines, not its errors.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2 (an embedded interpreter): hide nothing
        yield
        return
    show_everything = False
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
            if "tensorflow" in sys.modules:
                sys.modules["tensorflow"].config.list_physical_devices()
        except KeyboardInterrupt:
            raise
        except BaseException:
            show_everything = True
            raise
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", errors="replace")
            gpu_expected = has_nvidia_device()
            kept = [line for line in text.splitlines(keepends=True)
                    if show_everything or not (STARTUP_NOISE.match(line)
                                               or (NO_GPU_PROBE.match(line) and not gpu_expected))]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
