"""Writing files so that an interrupted run never leaves one half-written: atomic files and folders, JSON, figures.

Every writer here writes under a temporary name in the target's own folder and
renames it into place when it is whole (``os.replace`` is atomic on one file
system), so a crash, Ctrl-C or ``kill -9`` leaves either the old file or the new
one, never a mix. A temporary file left by a killed process starts with a dot and
ends in ``.partial``; :func:`remove_leftovers` clears them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PARTIAL_SUFFIX = ".partial"


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds.

    On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=PARTIAL_SUFFIX)
    os.close(handle)
    temporary = Path(temporary)
    try:
        yield temporary
        os.chmod(temporary, 0o666 & ~umask())  # mkstemp makes 0600 files; give the usual mode
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


@contextmanager
def atomic_folder(target: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty staging folder beside ``target``; on success it replaces ``target`` whole.

    On an exception the staging folder is removed and ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=PARTIAL_SUFFIX))
    try:
        yield staging
        os.chmod(staging, 0o777 & ~umask())  # mkdtemp makes it 0700: use the usual mode
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def umask() -> int:
    """The process's file-mode creation mask (read without changing it for long)."""
    current = os.umask(0)
    os.umask(current)
    return current


def remove_leftovers(folder: str | os.PathLike) -> None:
    """Delete the temporary files and folders that a killed writer left under ``folder``."""
    for leftover in Path(folder).rglob(f".*{PARTIAL_SUFFIX}"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path``, atomically."""
    path = Path(path)
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return path


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically. NumPy scalars and arrays are converted."""
    return write_text(path, json.dumps(data, indent=2, default=to_json) + "\n")


def read_json(path: str | os.PathLike) -> Any | None:
    """The JSON in ``path``, or None when it is missing or not JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def to_json(value: Any) -> Any:
    """``json.dumps(default=...)`` for NumPy values and paths."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def jsonable(value: Any) -> Any:
    """``value`` with NumPy values and paths turned into plain JSON types."""
    return json.loads(json.dumps(value, default=to_json))


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, as 64 hex digits."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def save_figure(figure, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Save a matplotlib figure as PNG atomically, show it in a notebook, and close it.

    In a notebook the figure is displayed under its cell (once: a figure the
    notebook already showed at the end of an earlier cell is not shown again), so
    a notebook shows what the script saves.
    """
    import matplotlib.pyplot as plt

    from common.console import in_notebook

    path = Path(path)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=dpi, bbox_inches="tight")
    number = getattr(figure, "number", None)  # None: a Figure made without pyplot, never shown yet
    if in_notebook() and (number is None or plt.fignum_exists(number)):
        from IPython.display import display

        display(figure)
    plt.close(figure)
    return path
