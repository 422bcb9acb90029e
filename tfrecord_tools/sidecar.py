"""OUT's file names, the records' features, and ``dataset.json``: what it holds, writing and reading it.

OUT after a finished ``write``::

    OUT/dataset.json                     what is inside (readable without this tool)
    OUT/rejected.jsonl                   one JSON line per source file not written
    OUT/train.tfrecord-00000-of-00002    shards: <split>.tfrecord-<index>-of-<count>
    OUT/test.tfrecord-00000-of-00002

While writing, a shard lives under a hidden temporary name
(``.incomplete-train.tfrecord-00000-of-00002.<pid>``) that no glob for
``train.tfrecord-*`` matches, and ``.tfrecord_tools-progress.jsonl`` lists the
finished shards so that a re-run after a crash can keep them. ``dataset.json``
and ``rejected.jsonl`` are written under ``.incomplete-<name>.<pid>`` and renamed
too, so a crash leaves only names that the next write recognises and removes.
Operating-system metadata files (``.DS_Store``, ``Thumbs.db``, ``desktop.ini``)
in OUT are neither ours nor in the way: ``write`` leaves them alone.
"""

import collections
import json
import os
import re

from . import __version__
from .encode import RESIZE_FILTER, RESIZE_JPEG_QUALITY
from .errors import SidecarError

SIDECAR_NAME = "dataset.json"
REJECTED_NAME = "rejected.jsonl"
PROGRESS_NAME = ".tfrecord_tools-progress.jsonl"
INCOMPLETE_PREFIX = ".incomplete-"
#: Any name shaped like a shard: five digits or more each (100,000 shards and more get six).
SHARD_NAME_PATTERN = re.compile(r"^(?P<split>[A-Za-z0-9_]+)\.tfrecord-(?P<index>\d{5,})-of-(?P<count>\d{5,})$")
#: Contact sheets that ``info`` may save inside OUT (``write`` leaves them alone).
CONTACT_SHEET_PATTERN = re.compile(r"^contact_sheet[^/]*\.(png|jpe?g)$", re.IGNORECASE)
#: Files that file browsers create in any folder they show (macOS Finder, Windows Explorer).
OS_METADATA_NAMES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
#: Bumped when the records' content or layout changes; part of every shard's plan digest.
FORMAT_VERSION = 1


def shard_file_name(split, index, count):
    """``train.tfrecord-00003-of-00016`` for split ``train``, shard 3 of 16.

    Numbers have five digits, or more when needed: ``train.tfrecord-00003-of-100000``.
    """
    return f"{split}.tfrecord-{index:05d}-of-{count:05d}"


def parse_shard_name(name):
    """``(split, index, count)`` of a name that :func:`shard_file_name` writes, else None.

    A name shaped like a shard but not written this way (``00003-of-00002``,
    ``000003-of-00016``) gives None: it is no shard of ours, though it looks like one
    (``verify`` reports such files).
    """
    found = SHARD_NAME_PATTERN.match(name)
    if found is None:
        return None
    split, index, count = found["split"], int(found["index"]), int(found["count"])
    if index >= count or shard_file_name(split, index, count) != name:
        return None
    return split, index, count


#: Every record holds these features; ``dtype`` is the tf.io.FixedLenFeature dtype, shape ``[]``.
#: The one description of a record: ``read.FEATURE_DESCRIPTION`` (for TensorFlow), ``verify``
#: and ``dataset.json`` are all made from it.
FEATURES = {
    "image/encoded": {"dtype": "string", "description": "JPEG bytes (original or RGB re-encoding)"},
    "image/format": {"dtype": "string", "description": "always b'jpeg'"},
    "image/height": {"dtype": "int64", "description": "pixels"},
    "image/width": {"dtype": "int64", "description": "pixels"},
    "image/channels": {"dtype": "int64", "description": "1 (grayscale JPEG kept as is) or 3 (RGB)"},
    "image/class/label": {"dtype": "int64", "description": "0-based index into 'classes' (sorted names)"},
    "image/class/text": {"dtype": "string", "description": "class folder name, UTF-8"},
    "image/filename": {"dtype": "string", "description": "source path relative to SRC, UTF-8"},
    "image/sha256": {"dtype": "string", "description": "hex SHA-256 of the source file's bytes"},
    "image/source_format": {"dtype": "string", "description": "format sniffed from the source content"},
    "image/reencoded": {"dtype": "int64", "description": "1 if image/encoded is a re-encoding, 0 if source bytes"},
}


def is_our_file(name):
    """True for names that ``write`` creates in OUT (and may replace or remove)."""
    return (
        name in (SIDECAR_NAME, REJECTED_NAME, PROGRESS_NAME)
        or name.startswith(INCOMPLETE_PREFIX)
        or parse_shard_name(name) is not None
        or CONTACT_SHEET_PATTERN.match(name) is not None
    )


def incomplete_path(path):
    """The temporary name of ``path`` while it is written: ``.incomplete-<name>.<pid>`` beside it."""
    folder, name = os.path.split(os.fspath(path))
    return os.path.join(folder, f"{INCOMPLETE_PREFIX}{name}.{os.getpid()}")


def write_json_atomic(path, content):
    """Write JSON to a temporary name, then rename: readers never see half a file.

    The temporary name starts with :data:`INCOMPLETE_PREFIX`, so one left by a
    crash is recognised (and removed) by the next ``write``.
    """
    temporary = incomplete_path(path)
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(content, handle, indent=2, sort_keys=False)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def write_in_progress(out):
    """True when a ``write`` holds its lock on OUT right now (False where locks are unsupported)."""
    try:
        import fcntl
    except ImportError:  # Windows
        return False
    try:
        descriptor = os.open(os.fspath(out), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(descriptor)  # also releases our shared lock
    return False


def is_hex_digest(value):
    """True for a SHA-256 as ``dataset.json`` records it: 64 lowercase hex digits."""
    return isinstance(value, str) and len(value) == 64 and all(character in "0123456789abcdef" for character in value)


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def sidecar_problems(sidecar):
    """What in a parsed ``dataset.json`` is not shaped as ``write`` writes it (list of messages).

    Only the structure that ``load``, ``verify`` and ``info`` rely on is checked:
    ``classes`` a list of names, ``splits`` a mapping of split name to ``images``,
    ``bytes``, ``class_counts`` and ``shards`` (each with ``file``, ``images``,
    ``bytes``, ``sha256`` of 64 hex digits, ``class_counts``), ``image_size`` null
    or four sizes. Each shard is named for its split and place
    (``train.tfrecord-00001-of-00004`` is the second of train's four) and listed
    once: a shard listed twice, or under another split, would be read twice or
    into the wrong split.
    """
    if not isinstance(sidecar, dict):
        return [f"expected a JSON object, found {type(sidecar).__name__}"]
    problems = []
    classes = sidecar.get("classes")
    if not isinstance(classes, list) or not all(isinstance(name, str) for name in classes):
        problems.append("'classes' is not a list of class names")
    splits = sidecar.get("splits")
    if not isinstance(splits, dict):
        return problems + [f"'splits' is not an object of split name to split (found {type(splits).__name__})"]
    listed = set()  # shard file names seen
    for split, entry in splits.items():
        where = f"split {split!r}"
        if not isinstance(entry, dict):
            problems.append(f"{where} is {json.dumps(entry)[:40]}, expected an object")
            continue
        for key in ("images", "bytes"):
            if not _is_count(entry.get(key)):
                problems.append(f"{where}: '{key}' is missing or not a whole number")
        counts = entry.get("class_counts")
        if not isinstance(counts, dict) or not all(_is_count(count) for count in counts.values()):
            problems.append(f"{where}: 'class_counts' is missing or not an object of class name to count")
        size = entry.get("image_size")
        size_keys = ("min_height", "max_height", "min_width", "max_width")
        if size is not None and (not isinstance(size, dict) or not all(_is_count(size.get(key)) for key in size_keys)):
            problems.append(f"{where}: 'image_size' is neither null nor an object with {', '.join(size_keys)}")
        shards = entry.get("shards")
        if not isinstance(shards, list):
            problems.append(f"{where}: 'shards' is missing or not a list")
            continue
        for position, shard in enumerate(shards):
            if not isinstance(shard, dict):
                problems.append(f"{where} shard {position} is {json.dumps(shard)[:40]}, expected an object")
                continue
            name = shard.get("file")
            if not isinstance(name, str) or parse_shard_name(name) is None or os.path.basename(name) != name:
                problems.append(f"{where} shard {position}: 'file' is {name!r}, expected a name like "
                                f"{shard_file_name(split, position, len(shards))}")
            elif parse_shard_name(name)[0] != split:
                problems.append(f"{where} lists {name}, a shard of split {parse_shard_name(name)[0]!r}")
            elif name in listed:
                problems.append(f"{where} lists {name} twice: each shard is read once")
            else:
                listed.add(name)
            for key in ("images", "bytes"):
                if not _is_count(shard.get(key)):
                    problems.append(f"{where} shard {name or position}: '{key}' is missing or not a whole number")
            if not is_hex_digest(shard.get("sha256")):
                problems.append(f"{where} shard {name or position}: 'sha256' is missing or not 64 hex digits")
            shard_counts = shard.get("class_counts")
            if not isinstance(shard_counts, dict) or not all(_is_count(count) for count in shard_counts.values()):
                problems.append(f"{where} shard {name or position}: 'class_counts' is missing or not an object")
        expected = [shard_file_name(split, index, len(shards)) for index in range(len(shards))]
        names = [shard.get("file") if isinstance(shard, dict) else None for shard in shards]
        if not problems and names != expected:
            problems.append(f"{where} lists the shards {', '.join(map(str, names))}, expected {', '.join(expected)}")
    return problems


def read_sidecar(out):
    """Load ``OUT/dataset.json`` and check its structure.

    Raises
    ------
    SidecarError
        When OUT or the file is missing, or the file is not the JSON we write
        (see :func:`sidecar_problems`); a write running in OUT is named as such.
    """
    out = os.fspath(out)
    path = os.path.join(out, SIDECAR_NAME)
    if not os.path.isdir(out):
        raise SidecarError(f"{out} is not a folder; expected the OUT folder of 'tfrecord_tools write'")
    if not os.path.exists(path):
        if write_in_progress(out):
            hint = "a write into it is running now: wait for it to finish"
        elif os.path.exists(os.path.join(out, PROGRESS_NAME)):
            hint = "a write into it was interrupted: run the same write command again to finish it"
        else:
            hint = "is it a folder written by 'tfrecord_tools write'?"
        raise SidecarError(f"{path} is missing: {hint}")
    try:
        with open(path, encoding="utf-8") as handle:
            sidecar = json.load(handle)
    except (OSError, ValueError) as error:
        raise SidecarError(f"{path} cannot be read as JSON: {error}") from None
    if not isinstance(sidecar, dict) or "splits" not in sidecar or "classes" not in sidecar:
        raise SidecarError(f"{path} is not a tfrecord_tools sidecar (no 'splits' or 'classes' key)")
    problems = sidecar_problems(sidecar)
    if problems:
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise SidecarError(
            f"{path} is damaged: {problems[0]}{more}. Write the dataset again (with --overwrite if needed)"
        )
    return sidecar


def is_tfrecord_tools_sidecar(path):
    """True when the JSON file at ``path`` was written by this tool (``"tool": "tfrecord_tools"``)."""
    try:
        with open(path, encoding="utf-8") as handle:
            content = json.load(handle)
    except (OSError, ValueError):
        return False
    return isinstance(content, dict) and content.get("tool") == "tfrecord_tools"


# ---------------------------------------------------------------------------
# Describing a finished write


def _size_range(images):
    if not images:
        return None
    return {
        "min_height": min(image.height for image in images),
        "max_height": max(image.height for image in images),
        "min_width": min(image.width for image in images),
        "max_width": max(image.width for image in images),
    }


def _duplicates(splits):
    by_hash = collections.defaultdict(list)
    for split, images in splits.items():
        for image in images:
            by_hash[image.sha256].append((split, image.relative_path, image.class_name))
    across, conflicting, within_groups = [], [], 0
    for sha256, members in sorted(by_hash.items()):
        if len(members) < 2:
            continue
        files = sorted(f"{split}:{path}" for split, path, _ in members)
        if len({class_name for _, _, class_name in members}) > 1:
            conflicting.append({"sha256": sha256, "files": files})
        if len({split for split, _, _ in members}) > 1:
            across.append({"sha256": sha256, "files": files})
        else:
            within_groups += 1
    across.sort(key=lambda group: group["files"])
    conflicting.sort(key=lambda group: group["files"])
    return {
        "across_splits_count": len(across),
        "across_splits": across[:100],  # the first 100 groups; the count says how many there are
        "within_split_groups": within_groups,
        # The same bytes under two class names, in one split or across splits: one label is wrong.
        "conflicting_labels_count": len(conflicting),
        "conflicting_labels": conflicting[:100],
    }


def build_sidecar(scan, splits, plans, shard_results, options, warnings=()):
    """The content of ``dataset.json`` (no timings and no absolute paths, so it too is reproducible).

    Parameters
    ----------
    scan : ScanResult
    splits : dict[str, list of ImageFile]
        From :func:`tfrecord_tools.plan.split_images`.
    plans : list of dict
        From :func:`tfrecord_tools.plan.plan_shards`.
    shard_results : dict
        Shard file name to what writing it gave (``file``, ``images``, ``bytes``,
        ``sha256``, ``class_counts``, ``plan_sha256``).
    options : WriteOptions
        The write's settings (:class:`tfrecord_tools.write.WriteOptions`).
    warnings : list of str
    """
    split_entries = {}
    for split, images in splits.items():
        shards = [shard_results[plan["file"]] for plan in plans if plan["split"] == split]
        class_counts = dict.fromkeys(scan.class_names, 0)
        for image in images:
            class_counts[image.class_name] += 1
        split_entries[split] = {
            "images": len(images),
            "bytes": sum(shard["bytes"] for shard in shards),
            "class_counts": class_counts,
            "image_size": _size_range(images),
            "shards": [
                {key: shard[key] for key in ("file", "images", "bytes", "sha256", "class_counts", "plan_sha256")}
                for shard in shards
            ],
        }
    reencoded = collections.Counter(
        f"{image.source_format}/{image.mode}" for image in scan.images if image.reencode
    )
    rejected = collections.Counter(item.category for item in scan.rejected)
    multi_frame = sorted(image.relative_path for image in scan.images if image.frames > 1)
    stored_as = options.stored_as
    max_side = stored_as.get("max_side")
    return {
        "tool": "tfrecord_tools",
        "tool_version": __version__,
        "format_version": FORMAT_VERSION,
        "source": os.path.basename(scan.source.rstrip(os.sep)) or scan.source,
        "layout": scan.layout,
        "seed": options.seed,
        "test_fraction": options.test_fraction if scan.layout == "classes" else None,
        "val_fraction": options.val_fraction if scan.layout == "classes" else None,
        "jpeg_quality": options.reencode_quality,
        "strict_jpeg_check": True,
        "resize": None if max_side is None else {
            "max_side": max_side,
            "filter": RESIZE_FILTER,
            "jpeg_quality": stored_as.get("jpeg_quality", RESIZE_JPEG_QUALITY),
            "resized_images": sum(image.resized for image in scan.images),
        },
        "exif_orientation_applied": bool(stored_as.get("apply_orientation")),
        "max_pixels": options.max_pixels,
        "classes": scan.class_names,
        "label_to_index": scan.label_to_index,
        "features": FEATURES,
        "splits": split_entries,
        "totals": {
            "images": sum(entry["images"] for entry in split_entries.values()),
            "bytes": sum(entry["bytes"] for entry in split_entries.values()),
            "shards": len(plans),
            "rejected": len(scan.rejected),
            "reencoded": sum(reencoded.values()),
            "multi_frame": len(multi_frame),
        },
        "empty_classes": [name for name, count in scan.class_counts().items() if count == 0],
        "reencoded_by_source": dict(sorted(reencoded.items())),
        "rejected_by_category": dict(sorted(rejected.items())),
        "rejected_file": REJECTED_NAME,
        # Animated GIF/WebP/PNG and multi-page TIFF: only the first frame or page is stored.
        "multi_frame_files": multi_frame[:100],
        "duplicates": _duplicates(splits),
        "warnings": list(warnings),
    }


def write_rejected(out, rejected):
    """``rejected.jsonl``: one JSON line per file not written (``path``, ``category``, ``reason``)."""
    temporary = incomplete_path(os.path.join(out, REJECTED_NAME))  # removed by the next write if we crash
    with open(temporary, "w", encoding="ascii") as handle:
        for item in rejected:
            handle.write(json.dumps(item.as_json(), ensure_ascii=True) + "\n")
    os.replace(temporary, os.path.join(out, REJECTED_NAME))
