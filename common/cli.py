"""The flags every lab script shares, with the lab's values as defaults.

Usage in a script::

    parser = cli.make_parser(__doc__, epochs=5, batch_size=32, out="outputs/lab01")
    parser.add_argument("--dataset", choices=["mnist", "fashion_mnist"], default="mnist")
    config = cli.parse(parser)

``config`` is an ``argparse.Namespace`` whose ``out`` is a ``pathlib.Path`` that
exists. Inside Jupyter (where ``sys.argv`` holds the kernel's own arguments) the
defaults are used, so the same file runs as a notebook.
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import sys
import textwrap
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
            parser.error(f"--data-dir {config.data_dir} does not exist")
    seed_everything(config.seed)
    config.out = config.out.expanduser()
    if config.out.exists() and not config.out.is_dir():
        parser.error(f"--out {config.out} is a file; give a folder for the outputs (new or existing)")
    config.out.mkdir(parents=True, exist_ok=True)
    return config


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and (if imported) TensorFlow/Keras."""
    random.seed(seed)
    import numpy as np

    np.random.seed(seed)
    if "keras" in sys.modules or "tensorflow" in sys.modules:
        import keras

        keras.utils.set_random_seed(seed)


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
    """Hide TensorFlow's C++ start-up chatter (CUDA probing, oneDNN notes).

    Must run before ``import tensorflow``; real warnings and errors still show.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def positive_int(text: str) -> int:
    """argparse ``type=`` for flags that take a positive whole number (a clear error otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {value}")
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
