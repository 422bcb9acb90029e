"""Command line: convert an image folder to decode-checked TFRecords, verify them, describe them.

Examples::

    # 80/20 stratified split, shards of ~100 MB (at least 4 per split), bad files skipped
    python -m tfrecord_tools write oregon_wildlife wildlife_tfrecords --test-fraction 0.2 --seed 0

    # re-read every shard, checksum, decode every image, compare with dataset.json
    python -m tfrecord_tools verify wildlife_tfrecords

    # counts per class and split, and a contact sheet of 6 images per class
    python -m tfrecord_tools info wildlife_tfrecords --contact-sheet wildlife_tfrecords/contact_sheet.png

Exit codes: 0 success, 1 bad data (or verify found problems), 2 bad arguments,
130 interrupted. Errors are one line naming the file and what was expected.
"""

import argparse
import json
import sys

from . import __version__
from .errors import TFRecordToolsError, VerifyError

_WRITE_EXAMPLE = """example:
  python -m tfrecord_tools write oregon_wildlife wildlife_tfrecords --test-fraction 0.2 --seed 0 --workers 2

SRC is SRC/<class>/<image> (any depth below the class folder), or
SRC/<split>/<class>/<image> when it is split already; split folders are train,
validation (or val, valid) and test, and SRC then holds nothing else.
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
    if not 0.0 <= value < 1.0:
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
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size such as 100MB or 64MiB, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive size, got {text!r}")
    return value


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m tfrecord_tools",
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
    write.add_argument("--test-fraction", type=_fraction, default=0.2,
                       help="share of each class held out as 'test' (default 0.2; 0 for none)")
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
    write.add_argument("--overwrite", action="store_true",
                       help="replace a finished dataset in OUT made from other inputs (only our files)")
    write.add_argument("--no-progress", action="store_true", help="no progress bars")
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
    info.add_argument("--contact-sheet", metavar="PNG", help="also save a grid of a few images per class here")
    info.add_argument("--split", default="train", help="split for the contact sheet (default train)")
    info.add_argument("--per-class", type=_positive_int, default=6, help="images per class on the sheet")
    info.add_argument("--json", action="store_true", help="print the information as JSON")
    return parser


def _run(arguments):
    if arguments.command == "write":
        from .encode import DEFAULT_MAX_PIXELS
        from .write import format_summary, write_dataset

        summary = write_dataset(
            arguments.src, arguments.out, test_fraction=arguments.test_fraction, seed=arguments.seed,
            num_shards=arguments.num_shards, target_shard_bytes=arguments.shard_size, workers=arguments.workers,
            on_error=arguments.on_error, max_pixels=arguments.max_pixels or DEFAULT_MAX_PIXELS,
            overwrite=arguments.overwrite, progress=not arguments.no_progress,
        )
        print(json.dumps(summary, indent=2) if arguments.json else format_summary(summary))
        return 0
    if arguments.command == "verify":
        from .verify import verify

        report = verify(arguments.out, workers=arguments.workers, raise_on_error=False)
        print(report.format())
        return 0 if report.ok else 1
    from .info import contact_sheet, dataset_info, format_info

    information = dataset_info(arguments.out)
    print(json.dumps(information, indent=2) if arguments.json else format_info(information))
    if arguments.contact_sheet:
        path = contact_sheet(arguments.out, arguments.contact_sheet, split=arguments.split,
                             per_class=arguments.per_class)
        # With --json, stdout holds the JSON alone, so that it can be piped to a parser.
        print(f"contact sheet: {path}", file=sys.stderr if arguments.json else sys.stdout)
    return 0


def main(argv=None):
    """Run the command line; returns the exit code."""
    arguments = build_parser().parse_args(argv)
    try:
        return _run(arguments)
    except VerifyError as error:
        print(f"tfrecord_tools {arguments.command}: error: {error}", file=sys.stderr)
        return 1
    except TFRecordToolsError as error:
        print(f"tfrecord_tools {arguments.command}: error: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # disk full, permission denied, ...: name the file, no traceback
        where = f"{error.filename}: " if error.filename else ""
        print(f"tfrecord_tools {arguments.command}: error: {where}{error.strerror or error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"tfrecord_tools {arguments.command}: interrupted; run the same command again to finish",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
