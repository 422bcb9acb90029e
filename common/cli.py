"""The flags every lab script shares, with the lab's values as defaults, checked before any work starts.

Usage in a script::

    parser = cli.make_parser(__doc__, epochs=5, batch_size=32, out="outputs/lab01", dataset="mnist")
    parser.add_argument("--dropout", type=cli.rate, default=0.5)
    config = cli.parse(parser, ARGS)

``config`` is an ``argparse.Namespace`` whose ``out`` and ``data_dir`` are
``pathlib.Path`` objects. In a notebook (where ``sys.argv`` holds the kernel's own
arguments) the flags come from ``ARGS``, the script's parameters cell, so the same
file runs as a notebook. Everything that can be checked without data is checked
here, before TensorFlow loads: the values, ``--data-dir``, ``--out`` and ``--limit``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import textwrap
from pathlib import Path

from common.console import in_notebook
from common.datasets import DATA_CHOICES, check_limit
from common.errors import UserError

SPLIT_FOLDER_NAMES = {"train", "test", "val", "validation", "training", "testing"}


def make_parser(
    doc: str | None,
    *,
    epochs: int | None,
    batch_size: int | None,
    out: str,
    dataset: str | None = None,
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
    dataset : {"mnist", "fashion_mnist", "cifar10"}, optional
        The dataset whose split sizes :func:`parse` checks ``--limit`` against (a
        ``--dataset`` flag of the script, if any, takes its place). ``None``: the
        script checks its limit itself once it has listed its data.
    seed : int
        Default random seed.
    limit_help, epochs_help, batch_size_help : str, optional
        ``--help`` texts where the defaults' do not fit.
    """
    parser = argparse.ArgumentParser(description=textwrap.dedent(doc or "").strip(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.limit_dataset = dataset
    if epochs is not None:
        parser.add_argument("--epochs", type=positive_int, default=epochs,
                            help=epochs_help or f"training epochs (lab: {epochs})")
    if batch_size is not None:
        parser.add_argument("--batch-size", type=positive_int, default=batch_size,
                            help=batch_size_help or f"examples per training step (lab: {batch_size})")
    parser.add_argument("--data", choices=DATA_CHOICES, default="auto",
                        help="auto: the real dataset if cached, found in --data-dir or downloadable, else an "
                        "offline stand-in (announced in a banner and recorded in every output); real: the real "
                        "dataset or a clear error; standin: the offline stand-in")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="folder holding the dataset files (see README: Data); default: the Keras cache "
                        "(~/.keras/datasets, or $KERAS_HOME/datasets)")
    parser.add_argument("--limit", type=positive_int, default=None,
                        help=limit_help or "use this many training images (stratified) and a proportional "
                        "share of the test images, for a quick run")
    parser.add_argument("--out", type=Path, default=Path(out),
                        help=f"folder for figures, metrics JSON and models (default: {out})")
    parser.add_argument("--seed", type=seed_value, default=seed,
                        help=f"random seed for Python, NumPy and TensorFlow (default: {seed})")
    parser.add_argument("--fresh", action="store_true",
                        help="start over even when --out holds a run with the same settings (by default it is "
                        "resumed, or replayed when it was complete)")
    return parser


def parse(parser: argparse.ArgumentParser, notebook_args: str = "",
          argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the flags and check everything that needs no data; exit with a one-line message when wrong.

    On the command line the flags come from ``sys.argv`` (or ``argv``). In a
    notebook they come from ``notebook_args``, the script's ``ARGS`` parameters cell
    (for example ``"--epochs 1 --limit 2000"``), so "Run all" can be a quick run.

    Checks, in order: each flag's value (argparse); ``--data-dir`` exists and is not
    one split of a dataset; ``--out`` is not a file or below one; ``--limit`` suits
    the dataset and the largest ``*batch_size`` flag (:func:`common.datasets.check_limit`).
    Also installs the handler that prints a :class:`UserError` as one paragraph and
    exits with status 2 (not in a notebook, where the kernel shows it).
    """
    if argv is None and in_notebook():
        argv = shlex.split(notebook_args)
    else:
        install_error_handler()
    config = parser.parse_args(argv)
    if getattr(config, "data_dir", None) is not None:
        config.data_dir = check_data_dir(config.data_dir.expanduser())
    config.out = check_out(config.out.expanduser())
    dataset = getattr(config, "dataset", None) or getattr(parser, "limit_dataset", None)
    if dataset is not None and getattr(config, "limit", None) is not None:
        batches = [value for key, value in vars(config).items() if key.endswith("batch_size") and value]
        check_limit(dataset, config.limit, global_batch=max(batches, default=None))
    return config


def check_data_dir(data_dir: Path) -> Path:
    """``--data-dir`` as given, or a clear error when it is missing or names one split folder of a dataset."""
    if not data_dir.exists():
        raise UserError(f"--data-dir {data_dir} does not exist: give the folder that holds the dataset files "
                        "(README: Data)")
    siblings = {child.name.lower() for child in data_dir.parent.iterdir() if child.is_dir()} \
        if data_dir.is_dir() and data_dir.name.lower() in SPLIT_FOLDER_NAMES else set()
    if len(siblings & SPLIT_FOLDER_NAMES) >= 2:
        raise UserError(f"--data-dir {data_dir} looks like one split of a dataset (beside it: "
                        f"{', '.join(sorted(siblings & SPLIT_FOLDER_NAMES))}); pass its parent, --data-dir "
                        f"{data_dir.parent}")
    return data_dir


def check_out(out: Path) -> Path:
    """``--out`` as given, or a clear error when it, or a folder above it, is a file."""
    for folder in (out, *out.parents):
        if folder.exists():
            if not folder.is_dir():
                where = "is a file" if folder == out else f"is below {folder}, which is a file"
                raise UserError(f"--out {out} {where}; give a folder for the outputs (new or existing)")
            break
    return out


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


def _checked(convert, accepts, expected: str):
    """An argparse ``type=``: ``convert(text)``, refused with "expected ..., got ..." unless ``accepts`` it."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not accepts(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
        return value

    return parse


#: argparse ``type=`` for flags that take a positive whole number.
positive_int = _checked(int, lambda value: value >= 1, "a positive whole number")
#: argparse ``type=`` for a rate from 0 up to, not including, 1 (dropout, for example).
rate = _checked(float, lambda value: 0 <= value < 1, "a rate from 0 up to, not including, 1")
#: argparse ``type=`` for ``--seed``: a whole number in NumPy's range.
seed_value = _checked(int, lambda value: 0 <= value < 2**32, "a seed from 0 to 2**32 - 1 (NumPy's range)")
