"""Writing what a run produced: banners, metrics JSON, figures, the summary line.

Every writer here is atomic (write to a temporary name in the same folder, then
rename), so an interrupted run never leaves a half-written file that looks whole.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def banner(message: str) -> None:
    """Print ``message`` in a box that is hard to miss in a long log."""
    lines = message.strip().splitlines()
    width = max(len(line) for line in lines)
    rule = "+" + "-" * (width + 2) + "+"
    print(rule)
    for line in lines:
        print(f"| {line.ljust(width)} |")
    print(rule, flush=True)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(handle)
    temporary = Path(temporary)
    try:
        yield temporary
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual mode
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically. NumPy scalars and arrays are converted."""
    path = Path(path)
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(data, indent=2, default=_to_json) + "\n", encoding="utf-8")
    return path


def save_figure(figure, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Save a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    return path


def run_info() -> dict[str, Any]:
    """Versions and machine facts worth keeping beside every metrics file."""
    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    for module in ("numpy", "tensorflow", "keras", "sklearn"):
        if module in sys.modules:
            info[module] = getattr(sys.modules[module], "__version__", "?")
    return info


def summary_line(title: str, **values: Any) -> str:
    """One line such as ``lab01 | softmax_accuracy=0.9244 | cnn_accuracy=0.9912 | total_s=81.2``."""
    parts = [title]
    for key, value in values.items():
        if isinstance(value, float):
            value = f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
        parts.append(f"{key}={value}")
    return " | ".join(parts)


class Stopwatch:
    """Wall-clock seconds since creation (``perf_counter``)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start


def _to_json(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
