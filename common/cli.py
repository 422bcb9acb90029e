"""The flags every lab script shares, with the lab's values as defaults.

Usage in a script::

    parser = cli.make_parser(__doc__, epochs=5, batch_size=32, out="outputs/lab01")
    parser.add_argument("--dataset", choices=["mnist", "fashion_mnist"], default="mnist")
    config = cli.parse(parser, ARGS)

``config`` is an ``argparse.Namespace`` whose ``out`` is a ``pathlib.Path`` that
exists. Inside Jupyter (where ``sys.argv`` holds the kernel's own arguments) the
flags come from ``ARGS``, the script's parameters cell, so the same file runs as a
notebook. :func:`quiet_tensorflow` hides TensorFlow's start-up lines.
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.util
import os
import random
import re
import shlex
import sys
import tempfile
import textwrap
from contextlib import contextmanager
from pathlib import Path

from common.datasets import DATA_CHOICES
from common.errors import UserError


def make_parser(
    doc: str | None,
    *,
    epochs: int | None,
    batch_size: int | None,
    out: str,
    seed: int = 0,
    limit_help: str | None = None,
    epochs_help: str | None = None,
    batch_size_help: str | None = None,
) -> argparse.ArgumentParser:
    """An argument parser with the shared flags.

    Parameters
    ----------
    doc : str or None
        The script's docstring, shown as the ``--help`` description.
    epochs, batch_size : int or None
        The lab's values for this script. ``None`` leaves the flag out (for a
        script that trains nothing).
    out : str
        Default output folder.
    seed : int
        Default random seed.
    limit_help : str, optional
        ``--help`` text for ``--limit`` when the script subsets differently
        from the stratified subset of ``common.datasets``.
    epochs_help, batch_size_help : str, optional
        ``--help`` text for ``--epochs`` / ``--batch-size`` when the default is
        not the lab's value (the default text says "lab: N").
    """
    description = textwrap.dedent(doc or "").strip()
    parser = argparse.ArgumentParser(
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if epochs is not None:
        parser.add_argument(
            "--epochs", type=positive_int, default=epochs,
            help=epochs_help or f"training epochs (lab: {epochs})",
        )
    if batch_size is not None:
        parser.add_argument(
            "--batch-size", type=positive_int, default=batch_size,
            help=batch_size_help or f"examples per training step (lab: {batch_size})",
        )
    parser.add_argument(
        "--data", choices=DATA_CHOICES, default="auto",
        help="auto: the real dataset if cached, found in --data-dir or downloadable, "
        "else an offline stand-in (announced in a banner and recorded in every output); "
        "real: the real dataset or a clear error; standin: the offline stand-in",
    )
    parser.add_argument(
        "--data-dir", type=Path, default=None,
        help="folder holding the dataset files (see README: Data); default: the Keras cache "
        "(~/.keras/datasets, or $KERAS_HOME/datasets)",
    )
    parser.add_argument(
        "--limit", type=positive_int, default=None,
        help=limit_help or "use at most this many training images (and a proportional share of test "
        "images, stratified) for a quick run",
    )
    parser.add_argument(
        "--out", type=Path, default=Path(out),
        help=f"folder for figures, metrics JSON and models (default: {out})",
    )
    parser.add_argument(
        "--seed", type=_seed, default=seed,
        help=f"random seed for Python, NumPy and TensorFlow (default: {seed})",
    )
    parser.add_argument(
        "--fresh", action="store_true",
        help="start over even when --out holds an interrupted run with the same settings "
        "(by default such a run is resumed: finished parts are kept)",
    )
    return parser


def parse(parser: argparse.ArgumentParser, notebook_args: str = "",
          argv: list[str] | None = None) -> argparse.Namespace:
    """Parse flags, seed every random generator and create the output folder.

    On the command line the flags come from ``sys.argv`` (or ``argv``). Under
    Jupyter, where ``sys.argv`` holds the kernel's own arguments, they come from
    ``notebook_args``, the script's ``ARGS`` parameters cell (for example
    ``"--epochs 1 --limit 2000"``), so "Run all" can be a quick run.

    Also installs the handler that turns a :class:`UserError` into a one-paragraph
    message and exit status 2 (not under Jupyter, where the kernel shows it).
    """
    if argv is None and _running_in_jupyter():
        argv = shlex.split(notebook_args)
    else:
        install_error_handler()
    config = parser.parse_args(argv)
    if getattr(config, "data_dir", None) is not None:
        config.data_dir = config.data_dir.expanduser()
        if not config.data_dir.exists():
            raise UserError(f"--data-dir {config.data_dir} does not exist: give the folder that holds the "
                            "dataset files (README: Data)")
    seed_everything(config.seed)
    config.out = config.out.expanduser()
    if config.out.exists() and not config.out.is_dir():
        raise UserError(f"--out {config.out} is a file; give a folder for the outputs (new or existing)")
    config.out.mkdir(parents=True, exist_ok=True)
    return config


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow/Keras.

    TensorFlow, if not imported yet, is seeded as soon as it is (when
    :func:`quiet_tensorflow` installed its import hook), so a script can import it
    after parsing its flags without seeding again.
    """
    global _pending_seed
    random.seed(seed)
    import numpy as np

    np.random.seed(seed)
    if "keras" in sys.modules or "tensorflow" in sys.modules:
        import keras

        keras.utils.set_random_seed(seed)
        _pending_seed = None
    else:
        _pending_seed = seed


_pending_seed: int | None = None


def install_error_handler() -> None:
    """Print :class:`UserError` as a plain message (exit 2); leave other errors alone."""
    previous_hook = sys.excepthook

    def hook(exc_type, exc, tb):
        if issubclass(exc_type, UserError):
            sys.stdout.flush()
            print(f"\nerror: {exc}", file=sys.stderr)
            sys.stderr.flush()
            os._exit(2)  # skip TensorFlow's slow, noisy teardown
        previous_hook(exc_type, exc, tb)

    sys.excepthook = hook


def quiet_tensorflow() -> None:
    """Hide TensorFlow's start-up lines (absl, oneDNN, CUDA stub, CPU features); keep its errors.

    Call it at the top of a script, before anything imports TensorFlow. It sets
    ``TF_CPP_MIN_LOG_LEVEL=2`` and installs a one-shot import hook: the first
    ``import tensorflow`` (also the one inside ``import keras``) runs with file
    descriptor 2 sent to a temporary file, because TensorFlow's C++ libraries
    write their start-up notices there before ``TF_CPP_MIN_LOG_LEVEL`` is read.
    Afterwards the captured lines are replayed to stderr, less the known
    notices (see :data:`STARTUP_NOISE`); if the import fails, all of them are,
    so the reason is never hidden. Lines TensorFlow writes later (the CUDA probe
    at first device use, real warnings and errors) are not touched.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules or any(isinstance(finder, _QuietImport) for finder in sys.meta_path):
        return
    sys.meta_path.insert(0, _QuietImport())


# Start-up notices TensorFlow 2.16-2.21 writes while it is imported: informational
# (I...) lines, absl's note that it logs to stderr, and the CPU-feature line's second
# line. Anything else captured during the import (a warning, an error) is replayed.
STARTUP_NOISE = re.compile(
    r"^(I\d{4} |WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\.)"
)


class _QuietImport(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` and wraps its loading in :func:`_stderr_to_file`; gone once it loaded."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "tensorflow":
            return None
        for finder in sys.meta_path:  # the finders that would have found it
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _QuietLoader(spec.loader, self)
                return spec
        return None


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader, finder: _QuietImport) -> None:
        self.loader = loader
        self.finder = finder

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        sys.meta_path[:] = [finder for finder in sys.meta_path if finder is not self.finder]  # one shot
        with _stderr_to_file() as captured:
            try:
                self.loader.exec_module(module)
            except KeyboardInterrupt:  # Ctrl-C while importing: the start-up notices would only bury its line
                raise
            except BaseException:
                captured.replay_all = True
                raise
        if _pending_seed is not None:  # flags were parsed before TensorFlow loaded
            module.random.set_seed(_pending_seed)

    def __getattr__(self, name):  # get_resource_reader, is_package, ... from the real loader
        if name in ("loader", "finder"):  # not set yet (a copy in the making): no recursion
            raise AttributeError(name)
        return getattr(self.loader, name)


class _Captured:
    replay_all = False


@contextmanager
def _stderr_to_file():
    """Send file descriptor 2 to a temporary file; replay what is not start-up noise afterwards."""
    captured = _Captured()
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2 (an embedded interpreter): do nothing
        yield captured
        return
    with tempfile.TemporaryFile(mode="w+b") as temporary:
        os.dup2(temporary.fileno(), 2)
        try:
            yield captured
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            temporary.seek(0)
            text = temporary.read().decode("utf-8", errors="replace")
            kept = [line for line in text.splitlines(keepends=True)
                    if captured.replay_all or not STARTUP_NOISE.match(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def positive_int(text: str) -> int:
    """argparse ``type=`` for flags that take a positive whole number (a clear error otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {value}")
    return value


def rate(text: str) -> float:
    """argparse ``type=`` for a rate from 0 up to, not including, 1 (dropout, for example)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number from 0 up to 1, got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a rate from 0 up to, not including, 1, got {value}")
    return value


def _running_in_jupyter() -> bool:
    return "ipykernel" in sys.modules


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"expected a seed from 0 to 2**32 - 1 (NumPy's range), got {value}")
    return value
