"""Describe a written dataset, and draw a contact sheet of a few images per class."""

import io
import os

from .errors import TFRecordToolsError, option_name, printable
from .record_io import RecordError, iter_file_records, parse_example_bytes
from .sidecar import CONTACT_SHEET_PATTERN, incomplete_path, read_sidecar


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
        "resize": sidecar.get("resize"),
        "warnings": sidecar.get("warnings", []),
    }


def format_info(info):
    """A fixed-width table: one row per class, one column per split."""
    splits = list(info["splits"])
    names = [printable(name) for name in info["classes"]]  # a name may hold escape sequences, or bytes not UTF-8
    width = max([len("class")] + [len(name) for name in names])
    lines = [f"{printable(info['out'])}  (tool {info['tool_version']}, seed {info['seed']})"]
    header = f"{'label':>5}  {'class':<{width}}" + "".join(f"  {name:>10}" for name in splits)
    lines += [header, "-" * len(header)]
    for label, (name, shown) in enumerate(zip(info["classes"], names, strict=True)):
        counts = "".join(f"  {info['splits'][split]['class_counts'].get(name, 0):>10,}" for split in splits)
        lines.append(f"{label:>5}  {shown:<{width}}" + counts)
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
    resize = info.get("resize")
    if isinstance(resize, dict):
        lines.append(f"stored resized: longer side at most {resize.get('max_side')} px, JPEG quality "
                     f"{resize.get('jpeg_quality')} ({resize.get('resized_images', '?')} image(s) resized)")
    duplicates = info["duplicates"].get("across_splits_count", 0)
    if duplicates:
        lines.append(f"warning: {duplicates} image(s) appear in more than one split")
    conflicting = info["duplicates"].get("conflicting_labels_count", 0)
    if conflicting:
        lines.append(f"warning: {conflicting} image(s) are stored under two or more classes (see dataset.json)")
    lines.extend(f"warning: {printable(warning)}" for warning in info.get("warnings") or [])
    return "\n".join(lines)


def _damaged(out, shard_path, index, problem):
    return TFRecordToolsError(
        f"{shard_path} record {index} is damaged ({problem}); run 'python -m tfrecord_tools verify "
        f"{os.fspath(out)}' to list every problem, then write the dataset again"
    )


#: Largest contact sheet drawn, in pixels (about 300 MB of RGB): more would be no use on a screen.
MAX_SHEET_PIXELS = 100_000_000
_SHEET_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
#: Written into every sheet's metadata (PNG text chunk, JPEG comment): a later sheet may replace it.
SHEET_MARKER = "tfrecord_tools contact sheet"


def _is_our_sheet(path):
    """True when the file at ``path`` is a contact sheet that ``info`` saved (it carries the marker)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            comment = image.info.get("comment", b"")
            if isinstance(comment, bytes):
                comment = comment.decode("utf-8", "replace")
            return SHEET_MARKER in (image.info.get("Software", ""), comment)
    except Exception:  # not an image at all, or unreadable: not ours
        return False


def _source_folder_around(path, sidecar):
    """The folder above ``path`` that looks like the dataset's source folder, else None.

    The sidecar records the source folder's name only; a folder of that name that holds
    a class folder or split folder of the dataset counts as the source.
    """
    inside = {*sidecar.get("classes", []), *sidecar.get("splits", {})}
    folder = os.path.dirname(os.path.realpath(path))
    while True:
        if os.path.basename(folder) == sidecar.get("source") and any(
                os.path.isdir(os.path.join(folder, name)) for name in inside):
            return folder
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def contact_sheet(out, path, *, split="train", per_class=6, thumbnail_px=96, max_classes=None, overwrite=False):
    """Save a grid of images: one row per class, its first ``per_class`` images.

    Parameters
    ----------
    out : str or Path
        A folder written by ``write``.
    path : str or Path
        The file to write: ``.png``, ``.jpg`` or ``.jpeg`` (the format follows the
        name). Inside OUT its name must start with ``contact_sheet``, so that a
        later ``write`` knows it is no foreign file.
    split : str
        Which split to draw from.
    per_class : int
        Images per row, at most.
    thumbnail_px : int
        Side of each cell in pixels; images are scaled to fit it (up or down).
    max_classes : int, optional
        Draw only the first this many classes (default all).
    overwrite : bool
        Replace an existing file at ``path`` that is no contact sheet of ours. Without
        it, only a sheet that ``info`` saved earlier (its metadata says so, or it is a
        ``contact_sheet*`` file inside OUT) is replaced. A path inside the dataset's
        source folder is always refused.

    Returns
    -------
    str
        ``path``. The sheet is sized from what is drawn: one row per class drawn,
        as many cells as the fullest row, at most :data:`MAX_SHEET_PIXELS` pixels.

    Raises
    ------
    TFRecordToolsError
        A shard cannot be read, or one of its records or images is damaged
        (names the shard and the record; run ``verify`` for a full list); the
        sheet would be too large; or a name or format that cannot work.
    """
    from PIL import Image, ImageDraw, PngImagePlugin

    path = os.fspath(path)
    image_format = _SHEET_FORMATS.get(os.path.splitext(path)[1].lower())
    if image_format is None:
        raise TFRecordToolsError(f"contact sheet {path}: expected a name ending in .png, .jpg or .jpeg")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise TFRecordToolsError(f"contact sheet {path}: the folder {folder} does not exist; create it first, or "
                                 "save the sheet elsewhere. Nothing was changed.")
    if os.path.realpath(os.path.dirname(os.path.abspath(path))) == os.path.realpath(os.fspath(out)) and \
            not CONTACT_SHEET_PATTERN.match(os.path.basename(path)):
        raise TFRecordToolsError(
            f"contact sheet {path} would be saved inside the dataset folder under a name that the next 'write' "
            "would take for a foreign file; name it contact_sheet*.png (or .jpg), or save it elsewhere"
        )
    for name, value in (("per_class", per_class), ("thumbnail_px", thumbnail_px)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise TFRecordToolsError(f"{name} must be a whole number of at least 1, got {value!r}")
    sidecar = read_sidecar(out)
    source = _source_folder_around(path, sidecar)
    if source is not None:
        raise TFRecordToolsError(
            f"contact sheet {path} would be saved inside the dataset's source folder {source}, among the photos "
            "(and the next 'write' would take it for one); save it elsewhere. Nothing was changed."
        )
    inside_out = os.path.realpath(os.path.dirname(os.path.abspath(path))) == os.path.realpath(os.fspath(out))
    if os.path.lexists(path) and not overwrite:
        if os.path.isdir(path) or not (_is_our_sheet(path) or (inside_out and os.path.isfile(path))):
            raise TFRecordToolsError(
                f"contact sheet {path}: a file of that name exists and is no contact sheet saved by tfrecord_tools; "
                f"choose another name, or pass {option_name('--overwrite', 'overwrite=True')} to replace it. "
                "Nothing was changed."
            )
    if split not in sidecar["splits"]:
        raise TFRecordToolsError(f"split {split!r} is not in {out}; it has {', '.join(sidecar['splits'])}")
    classes = sidecar["classes"][:max_classes] if max_classes else sidecar["classes"]
    counts = sidecar["splits"][split]["class_counts"]
    # The canvas follows the data: rows for the classes drawn, columns for the fullest row.
    columns = max([min(per_class, counts.get(name, 0)) for name in classes] + [1])
    label_width = 160
    width, height = label_width + columns * thumbnail_px, max(1, len(classes)) * thumbnail_px
    if width * height > MAX_SHEET_PIXELS:
        raise TFRecordToolsError(
            f"the contact sheet would be {width:,} x {height:,} px ({width * height * 3 / 1e9:.1f} GB in memory), "
            f"over the limit of {MAX_SHEET_PIXELS / 1e6:.0f} MP: draw fewer classes (--max-classes), fewer "
            "images per class (--per-class) or smaller cells (--thumbnail-px)"
        )
    picked = {name: [] for name in classes}
    wanted = sum(min(per_class, counts.get(name, 0)) for name in classes)
    found = 0
    for shard in sidecar["splits"][split]["shards"]:
        if found >= wanted:
            break
        shard_path = os.path.join(os.fspath(out), shard["file"])
        index = 0
        try:
            with open(shard_path, "rb") as handle:  # one record at a time
                for index, _, record in iter_file_records(handle, check_crc=False):
                    features = parse_example_bytes(record)
                    name = features["image/class/text"][0].decode("utf-8", "surrogateescape")
                    if name in picked and len(picked[name]) < per_class:
                        picked[name].append((shard_path, index, features["image/encoded"][0]))
                        found += 1
                        if found >= wanted:
                            break
        except OSError as error:
            raise TFRecordToolsError(f"cannot read {shard_path}: {error.strerror or error}") from None
        except RecordError as error:
            raise _damaged(out, shard_path, error.index, error.problem) from None
        except (ValueError, KeyError, IndexError, TypeError) as error:  # not an Example, or a feature missing
            raise _damaged(out, shard_path, index, f"{type(error).__name__}: {error}") from None
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    for row, name in enumerate(classes):
        draw.text((4, row * thumbnail_px + thumbnail_px // 2 - 6), f"{row}: {name}"[:24], fill="black")
        for column, (shard_path, index, encoded) in enumerate(picked[name]):
            try:
                thumbnail = Image.open(io.BytesIO(encoded)).convert("RGB")
            except Exception as error:  # Pillow raises many types for damaged data
                raise _damaged(out, shard_path, index, f"its image does not decode: {error}") from None
            scale = thumbnail_px / max(thumbnail.size)  # fit the cell, up or down
            size = (max(1, round(thumbnail.width * scale)), max(1, round(thumbnail.height * scale)))
            # Small images are enlarged with hard edges (each pixel visible), large ones reduced smoothly.
            resample = Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS
            thumbnail = thumbnail.resize(size, resample)
            left = label_width + column * thumbnail_px + (thumbnail_px - thumbnail.width) // 2
            top = row * thumbnail_px + (thumbnail_px - thumbnail.height) // 2
            sheet.paste(thumbnail, (left, top))
    temporary = incomplete_path(path)
    try:
        if image_format == "JPEG":
            sheet.save(temporary, format=image_format, quality=90, comment=SHEET_MARKER)
        else:
            metadata = PngImagePlugin.PngInfo()
            metadata.add_text("Software", SHEET_MARKER)
            sheet.save(temporary, format=image_format, pnginfo=metadata)
        os.replace(temporary, path)
    except BaseException as error:
        if os.path.exists(temporary):
            os.remove(temporary)
        if isinstance(error, OSError):  # a full disk, say: name the sheet, not its temporary name
            raise OSError(error.errno, error.strerror, path) from None
        raise
    return path
