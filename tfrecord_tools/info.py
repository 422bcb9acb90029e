"""Describe a written dataset, and draw a contact sheet of a few images per class."""

import io
import os

from .errors import TFRecordToolsError
from .record_io import RecordError, iter_records, parse_example_bytes
from .sidecar import read_sidecar


def dataset_info(out):
    """Counts, classes and sizes of a written dataset, from its sidecar.

    Returns
    -------
    dict
        ``classes``, ``splits`` (per split: ``images``, ``bytes``, ``shards``,
        ``class_counts``, ``image_size``), ``totals``, ``rejected_by_category``,
        ``reencoded_by_source`` and ``duplicates``.
    """
    sidecar = read_sidecar(out)
    return {
        "out": os.path.abspath(os.fspath(out)),
        "classes": sidecar["classes"],
        "splits": {
            name: {
                "images": split["images"],
                "bytes": split["bytes"],
                "shards": len(split["shards"]),
                "class_counts": split["class_counts"],
                "image_size": split.get("image_size"),
            }
            for name, split in sidecar["splits"].items()
        },
        "totals": sidecar.get("totals", {}),
        "rejected_by_category": sidecar.get("rejected_by_category", {}),
        "reencoded_by_source": sidecar.get("reencoded_by_source", {}),
        "duplicates": sidecar.get("duplicates", {}),
        "seed": sidecar.get("seed"),
        "tool_version": sidecar.get("tool_version"),
    }


def format_info(info):
    """A fixed-width table: one row per class, one column per split."""
    splits = list(info["splits"])
    width = max([len("class")] + [len(name) for name in info["classes"]])
    lines = [f"{info['out']}  (tool {info['tool_version']}, seed {info['seed']})"]
    header = f"{'label':>5}  {'class':<{width}}" + "".join(f"  {name:>10}" for name in splits)
    lines += [header, "-" * len(header)]
    for label, name in enumerate(info["classes"]):
        counts = "".join(f"  {info['splits'][split]['class_counts'].get(name, 0):>10,}" for split in splits)
        lines.append(f"{label:>5}  {name:<{width}}" + counts)
    lines.append("-" * len(header))
    lines.append(f"{'':>5}  {'images':<{width}}" + "".join(f"  {info['splits'][s]['images']:>10,}" for s in splits))
    lines.append(f"{'':>5}  {'shards':<{width}}" + "".join(f"  {info['splits'][s]['shards']:>10,}" for s in splits))
    lines.append(
        f"{'':>5}  {'MB':<{width}}" + "".join(f"  {info['splits'][s]['bytes'] / 1e6:>10.1f}" for s in splits)
    )
    for split in splits:
        size = info["splits"][split]["image_size"]
        if size:
            lines.append(
                f"{split}: image height {size['min_height']}-{size['max_height']}, "
                f"width {size['min_width']}-{size['max_width']} px"
            )
    totals = info["totals"]
    lines.append(
        f"rejected: {totals.get('rejected', 0):,} {info['rejected_by_category'] or ''}".rstrip()
        + f"; re-encoded to JPEG: {totals.get('reencoded', 0):,} {info['reencoded_by_source'] or ''}".rstrip()
    )
    duplicates = info["duplicates"].get("across_splits_count", 0)
    if duplicates:
        lines.append(f"warning: {duplicates} image(s) appear in more than one split")
    return "\n".join(lines)


def _damaged(out, shard_path, index, problem):
    return TFRecordToolsError(
        f"{shard_path} record {index} is damaged ({problem}); run 'python -m tfrecord_tools verify "
        f"{os.fspath(out)}' to list every problem, then write the dataset again"
    )


def contact_sheet(out, path, *, split="train", per_class=6, thumbnail_px=96):
    """Save a PNG grid: one row per class, its first ``per_class`` images.

    Parameters
    ----------
    out : str or Path
        A folder written by ``write``.
    path : str or Path
        The PNG to write.
    split : str
        Which split to draw from.
    per_class : int
        Images per row.
    thumbnail_px : int
        Side of each cell in pixels.

    Returns
    -------
    str
        ``path``. The image is ``(classes * thumbnail_px, 160 + per_class *
        thumbnail_px)`` pixels.

    Raises
    ------
    TFRecordToolsError
        A shard cannot be read, or one of its records or images is damaged;
        names the shard and the record (run ``verify`` for a full list).
    """
    from PIL import Image, ImageDraw

    sidecar = read_sidecar(out)
    if split not in sidecar["splits"]:
        raise TFRecordToolsError(f"split {split!r} is not in {out}; it has {', '.join(sidecar['splits'])}")
    classes = sidecar["classes"]
    picked = {name: [] for name in classes}
    wanted = per_class * sum(1 for name in classes if sidecar["splits"][split]["class_counts"].get(name, 0))
    found = 0
    for shard in sidecar["splits"][split]["shards"]:
        if found >= wanted:
            break
        shard_path = os.path.join(os.fspath(out), shard["file"])
        with open(shard_path, "rb") as handle:
            data = handle.read()
        index = 0
        try:
            for index, _, record in iter_records(data, check_crc=False):
                features = parse_example_bytes(record)
                name = features["image/class/text"][0].decode("utf-8", "surrogateescape")
                if name in picked and len(picked[name]) < per_class:
                    picked[name].append((shard_path, index, features["image/encoded"][0]))
                    found += 1
        except RecordError as error:
            problem = str(error).split(": ", 1)[-1]  # without its own "record N: "
            raise _damaged(out, shard_path, error.index, problem) from None
        except (ValueError, KeyError, IndexError, TypeError) as error:  # not an Example, or a feature missing
            raise _damaged(out, shard_path, index, f"{type(error).__name__}: {error}") from None
    label_width = 160
    sheet = Image.new("RGB", (label_width + per_class * thumbnail_px, max(1, len(classes)) * thumbnail_px), "white")
    draw = ImageDraw.Draw(sheet)
    for row, name in enumerate(classes):
        draw.text((4, row * thumbnail_px + thumbnail_px // 2 - 6), f"{row}: {name}"[:24], fill="black")
        for column, (shard_path, index, encoded) in enumerate(picked[name]):
            try:
                thumbnail = Image.open(io.BytesIO(encoded)).convert("RGB")
            except Exception as error:  # Pillow raises many types for damaged data
                raise _damaged(out, shard_path, index, f"its image does not decode: {error}") from None
            thumbnail.thumbnail((thumbnail_px, thumbnail_px))
            left = label_width + column * thumbnail_px + (thumbnail_px - thumbnail.width) // 2
            top = row * thumbnail_px + (thumbnail_px - thumbnail.height) // 2
            sheet.paste(thumbnail, (left, top))
    path = os.fspath(path)
    sheet.save(path, format="PNG")
    return path
