"""Command line: convert an image folder to decode-checked TFRecords, verify them, describe them.

Examples::

    # 80/20 stratified split, shards of ~100 MB (at least 4 per split), bad files skipped
    python -m tfrecord_tools write oregon_wildlife wildlife_tfrecords --test-fraction 0.2 --seed 0

    # re-read every shard, checksum, decode every image, compare with dataset.json
    python -m tfrecord_tools verify wildlife_tfrecords

    # counts per class and split, and a contact sheet of 6 images per class
    python -m tfrecord_tools info wildlife_tfrecords --contact-sheet wildlife_tfrecords/contact_sheet.png

    # photos for a model that takes 300 px: store them at most 300 px a side (JPEG quality 90)
    python -m tfrecord_tools write photos photo_tfrecords --max-side 300 --val-fraction 0.1

Installed with ``pip install .``, the same command is ``tfrecord-tools``.
Exit codes: 0 success, 1 bad data (or verify found problems), 2 bad arguments,
130 interrupted (Ctrl-C), 143 stopped (SIGTERM). Errors are one line naming the
file and what was expected.
"""

import argparse
import errno
import json
import math
import os
import signal
import sys

from . import __version__, errors
from .errors import OptionError, TFRecordToolsError, printable_lines

_WRITE_EXAMPLE = """example:
  python -m tfrecord_tools write oregon_wildlife wildlife_tfrecords --test-fraction 0.2 --seed 0 --workers 2

SRC is SRC/<class>/<image> (any depth below the class folder), or
SRC/<split>/<class>/<image> when it is split already; split folders are train
(or training, training_set), validation (or val, valid, dev) and test (or
testing, test_set), in any case, and SRC then holds nothing else.
Formats are detected from content; every image is decoded before it is written
(run 'verify' afterwards to re-read the shards themselves).
Writes OUT/<split>.tfrecord-NNNNN-of-NNNNN, OUT/dataset.json and OUT/rejected.jsonl.
Running the same command again after a crash keeps the shards already finished."""

_VERIFY_EXAMPLE = """example:
  python -m tfrecord_tools verify wildlife_tfrecords

Exits 1 and names the shard and record of every problem found."""

_INFO_EXAMPLE = """example:
  python -m tfrecord_tools info wildlife_tfrecords --contact-sheet contact_sheet.png --per-class 6"""


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, got {value}")
    return value


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not math.isfinite(value) or not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {value}")
    return value


def _size(text):
    """Accept 100MB, 64MiB, 1GB or a plain byte count."""
    units = {"kib": 1024, "mib": 1024**2, "gib": 1024**3, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "b": 1}
    lowered = text.strip().lower()
    unit = next((unit for unit in units if lowered.endswith(unit)), None)
    number, factor = (lowered[: -len(unit)], units[unit]) if unit else (lowered, 1)
    try:
        value = int(float(number) * factor)
    except (ValueError, OverflowError):  # OverflowError: inf, 1e400
        raise argparse.ArgumentTypeError(f"expected a size such as 100MB or 64MiB, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive size, got {text!r}")
    return value


def _max_side(text):
    from .write import MAX_SIDE_LIMIT

    value = _positive_int(text)
    if value > MAX_SIDE_LIMIT:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_SIDE_LIMIT} pixels (the largest JPEG side), "
                                         f"got {value}")
    return value


def _quality(text):
    value = _positive_int(text)
    if value > 95:
        raise argparse.ArgumentTypeError(f"expected a JPEG quality from 1 to 95, got {value}")
    return value


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m tfrecord_tools" if sys.argv[0].endswith("__main__.py") else "tfrecord-tools",
        description="Convert a folder of labelled images to decode-checked, sharded TFRecords.",
        epilog="examples:\n  python -m tfrecord_tools write SRC OUT\n  python -m tfrecord_tools verify OUT\n"
        "  python -m tfrecord_tools info OUT --contact-sheet sheet.png",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"tfrecord_tools {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{write,verify,info}")

    write = commands.add_parser(
        "write", help="convert SRC/<class>/... to OUT/*.tfrecord-*", epilog=_WRITE_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Check, split and write an image folder as sharded TFRecords.",
    )
    write.add_argument("src", metavar="SRC", help="folder of class folders (or of split folders of class folders)")
    write.add_argument("out", metavar="OUT", help="output folder: new, empty, or from an earlier run of this tool")
    write.add_argument("--test-fraction", type=_fraction, default=None,
                       help="share of the images held out as 'test', spread over the classes (default 0.2; "
                       "0 for none; ignored, with a warning, when SRC is split already)")
    write.add_argument("--val-fraction", type=_fraction, default=None,
                       help="share held out as 'validation' in the same way (default 0)")
    write.add_argument("--seed", type=int, default=0, help="seed of the split and shard order (default 0)")
    shards = write.add_mutually_exclusive_group()
    shards.add_argument("--num-shards", type=_positive_int, help="shards per split (default: from --shard-size)")
    shards.add_argument("--shard-size", type=_size, default=None,
                        help="target shard size, e.g. 100MB (default 100MiB; at least 4 shards per split)")
    write.add_argument("--workers", type=_positive_int, default=None,
                       help="processes (default: all cores); the output does not depend on it")
    write.add_argument("--on-error", choices=("skip", "stop"), default="skip",
                       help="skip bad files and list them in rejected.jsonl (default), or stop at the first "
                       "bad image")
    write.add_argument("--max-pixels", type=_positive_int, default=None,
                       help="reject images with more pixels, before decoding (default 100,000,000)")
    write.add_argument("--max-side", type=_max_side, default=None, metavar="N",
                       help="store images with a side over N px resized so that the longer side is N (aspect "
                       "kept, Lanczos), as JPEG at --jpeg-quality; smaller ones as they are. Recorded in "
                       "dataset.json")
    write.add_argument("--jpeg-quality", type=_quality, default=None, metavar="Q",
                       help="JPEG quality (1-95) of every re-encoded image: those --max-side resizes and the PNG, "
                       "GIF, ... files stored as JPEG (default 90 for resized images, 95 for the others). "
                       "Recorded in dataset.json")
    write.add_argument("--apply-exif-orientation", action="store_true",
                       help="store photos turned upright as their EXIF orientation says (default: the pixels as "
                       "stored in the file, which is what tf.io.decode_jpeg and Keras give)")
    write.add_argument("--overwrite", action="store_true",
                       help="replace a finished dataset in OUT made from other inputs (only our files)")
    write.add_argument("--no-progress", action="store_true",
                       help="no progress on stderr (a bar on a terminal, one line per stage otherwise)")
    write.add_argument("--json", action="store_true", help="print the summary as JSON")

    verify = commands.add_parser(
        "verify", help="re-read and check every shard, record and image", epilog=_VERIFY_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Check every shard of OUT against its dataset.json.",
    )
    verify.add_argument("out", metavar="OUT", help="folder written by 'write'")
    verify.add_argument("--workers", type=_positive_int, default=None, help="processes (default: all cores)")

    info = commands.add_parser(
        "info", help="counts per class and split; optional contact sheet", epilog=_INFO_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Describe a written dataset.",
    )
    info.add_argument("out", metavar="OUT", help="folder written by 'write'")
    info.add_argument("--contact-sheet", metavar="FILE",
                      help="also save a grid of a few images per class here (.png or .jpg; inside OUT the name must "
                      "start with contact_sheet)")
    info.add_argument("--split", default="train", help="split for the contact sheet (default train)")
    info.add_argument("--per-class", type=_positive_int, default=6, help="images per class on the sheet")
    info.add_argument("--max-classes", type=_positive_int, default=None,
                      help="draw only the first this many classes (default all)")
    info.add_argument("--thumbnail-px", type=_positive_int, default=96, help="cell size on the sheet (default 96)")
    info.add_argument("--overwrite", action="store_true",
                      help="let --contact-sheet replace an existing file that is no contact sheet of ours "
                      "(never one inside the source folder)")
    info.add_argument("--json", action="store_true", help="print the information as JSON")
    parser.command_parsers = {"write": write, "verify": verify, "info": info}
    return parser


def _print(text, file=None):
    """print, escaping what a terminal would not show (:func:`~tfrecord_tools.errors.printable`).

    A reader that stopped reading (``info OUT | head -1``) ends the output quietly.
    """
    file = sys.stdout if file is None else file
    try:
        print(printable_lines(text), file=file, flush=True)
    except BrokenPipeError:
        # Nothing more can be shown; send the rest (and the flush at exit) nowhere.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, file.fileno())
        os.close(devnull)


def _run(arguments):
    if arguments.command == "write":
        from .encode import DEFAULT_MAX_PIXELS
        from .write import format_summary, write_dataset

        summary = write_dataset(
            arguments.src, arguments.out, test_fraction=arguments.test_fraction, seed=arguments.seed,
            num_shards=arguments.num_shards, target_shard_bytes=arguments.shard_size, workers=arguments.workers,
            on_error=arguments.on_error, max_pixels=arguments.max_pixels or DEFAULT_MAX_PIXELS,
            overwrite=arguments.overwrite, progress=not arguments.no_progress, val_fraction=arguments.val_fraction,
            max_side=arguments.max_side, jpeg_quality=arguments.jpeg_quality,
            apply_orientation=arguments.apply_exif_orientation,
        )
        _print(json.dumps(summary, indent=2) if arguments.json else format_summary(summary))
        return 0
    if arguments.command == "verify":
        from .verify import verify

        report = verify(arguments.out, workers=arguments.workers, raise_on_error=False)
        _print(report.format())
        return 0 if report.ok else 1
    from .info import dataset_info, format_info
    from .sheet import contact_sheet

    information = dataset_info(arguments.out)
    _print(json.dumps(information, indent=2) if arguments.json else format_info(information))
    if arguments.contact_sheet:
        path = contact_sheet(arguments.out, arguments.contact_sheet, split=arguments.split,
                             per_class=arguments.per_class, thumbnail_px=arguments.thumbnail_px,
                             max_classes=arguments.max_classes, overwrite=arguments.overwrite)
        # With --json, stdout holds the JSON alone, so that it can be piped to a parser.
        _print(f"contact sheet: {path}", file=sys.stderr if arguments.json else sys.stdout)
    return 0


class _Terminated(BaseException):
    """SIGTERM, turned into an exception so that workers are stopped and temporary files removed."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def main(argv=None):
    """Run the command line; returns the exit code."""
    parser = build_parser()
    arguments = parser.parse_args(argv)
    command_parser = parser.command_parsers[arguments.command]
    if arguments.command == "write":
        test_fraction = 0.2 if arguments.test_fraction is None else arguments.test_fraction
        if test_fraction + (arguments.val_fraction or 0.0) >= 1.0:
            command_parser.error(f"--test-fraction {test_fraction:g} + --val-fraction {arguments.val_fraction:g} "
                                 "must be below 1 (training needs images)")
    errors._speaking_to_command_line = True
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread: leave SIGTERM alone
        pass
    rerun = " run the same command again to finish (finished shards are kept)" if arguments.command == "write" else ""
    try:
        return _run(arguments)
    except OptionError as error:  # an argument out of range, found by the library: a usage error
        command_parser.error(str(error))
    except TFRecordToolsError as error:  # VerifyError included
        _print(f"tfrecord_tools {arguments.command}: error: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # disk full, permission denied, ...: name the file, no traceback
        where = f"{error.filename}: " if error.filename else ""
        hint = ""
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            hint = f"; free some space, then{rerun or ' run the same command again'}"
        _print(f"tfrecord_tools {arguments.command}: error: {where}{error.strerror or error}{hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"tfrecord_tools {arguments.command}: interrupted;{rerun or ' nothing was changed'}", file=sys.stderr)
        return 130
    except _Terminated:
        print(f"tfrecord_tools {arguments.command}: stopped by SIGTERM;{rerun or ' nothing was changed'}",
              file=sys.stderr)
        return 143
    finally:
        errors._speaking_to_command_line = False
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
