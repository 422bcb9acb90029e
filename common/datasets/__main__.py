"""python -m common.datasets: list and clean the data cache, or fetch every dataset into one folder.

    python -m common.datasets cache                 list the cache, with sizes
    python -m common.datasets cache --clean         remove everything this course wrote there
    python -m common.datasets cache --clean NAME..  remove those entries only
    python -m common.datasets fetch DIR [--weights] download and check every dataset (and the weights)

The cache is $KERAS_HOME/datasets (default ~/.keras/datasets). LAB_DATA_MIRROR=http://host/path/
makes every download come from that server; see README: Data.
"""

from __future__ import annotations

import argparse
import sys

from common.datasets import cache, downloads, fetch
from common.errors import UserError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common.datasets", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("cache", help="list the Keras dataset cache, or clean what this course wrote")
    listing.add_argument("--clean", nargs="*", metavar="NAME", default=None,
                         help="remove this course's entries (all, or the NAMEs listed); asks nothing, and never "
                              "touches what Keras or you put there")
    fetching = commands.add_parser("fetch", help="download and check MNIST, Fashion-MNIST and CIFAR-10 into DIR")
    fetching.add_argument("dir", metavar="DIR", help="folder to download into (created if needed)")
    fetching.add_argument("--weights", action="store_true",
                          help="also the ImageNet weights of the assignment's backbones (VGG16 and "
                               "MobileNetV3Small, include_top=False)")
    arguments = parser.parse_args(argv)
    try:
        if arguments.command == "cache":
            _cache(arguments.clean)
        else:
            _fetch(arguments.dir, arguments.weights)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def _cache(clean: list[str] | None) -> None:
    folder = cache.cache_dir()
    if clean is not None:
        removed = cache.clean_cache(clean)
        for entry in removed:
            print(f"removed {cache.human_size(entry['bytes']):>9}  {entry['name']}")
        print(f"removed {len(removed)} entr{'y' if len(removed) == 1 else 'ies'}, "
              f"{cache.human_size(sum(entry['bytes'] for entry in removed))}, from {folder}")
        return
    entries = cache.cache_entries()
    print(f"Keras dataset cache: {folder}" + ("" if folder.is_dir() else " (does not exist yet)"))
    for entry in entries:
        owner = "this course" if entry["own"] else "not ours (kept)"
        print(f"  {cache.human_size(entry['bytes']):>9}  {owner:<15}  {entry['name']}")
    own = sum(entry["bytes"] for entry in entries if entry["own"])
    total = sum(entry["bytes"] for entry in entries)
    print(f"total {cache.human_size(total)}; written by this course {cache.human_size(own)} "
          "(remove with: python -m common.datasets cache --clean [NAME ...])")


def _fetch(folder: str, weights: bool) -> None:
    mirror = downloads.mirror()
    print(f"fetching into {folder}" + (f" from the mirror {mirror}" if mirror else ""), flush=True)
    results = fetch.fetch_all(folder, weights=weights)
    total = sum(result["bytes"] for result in results)
    print(f"{len(results)} files, {cache.human_size(total)}, all checked. Use them as\n"
          f"  --data-dir {folder}   or   LAB_DATA_DIR={folder}   (lab scripts)\n"
          f"  cp -r {folder}/. ~/.keras/   (the Keras cache: datasets/ and models/)\n"
          f"  python -m http.server -d {folder} 8000   with LAB_DATA_MIRROR=http://THIS-HOST:8000/ on the "
          "other machines")


if __name__ == "__main__":
    sys.exit(main())
