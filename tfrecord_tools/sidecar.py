"""Names of the files in OUT, the feature spec, and reading/writing ``dataset.json``.

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

import json
import os
import re

from .errors import SidecarError

SIDECAR_NAME = "dataset.json"
REJECTED_NAME = "rejected.jsonl"
PROGRESS_NAME = ".tfrecord_tools-progress.jsonl"
INCOMPLETE_PREFIX = ".incomplete-"
SHARD_NAME_PATTERN = re.compile(r"^(?P<split>[A-Za-z0-9_]+)\.tfrecord-(?P<index>\d{5})-of-(?P<count>\d{5})$")
CONTACT_SHEET_PATTERN = re.compile(r"^contact_sheet.*\.png$")
#: Files that file browsers create in any folder they show (macOS Finder, Windows Explorer).
OS_METADATA_NAMES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
#: Bumped when the records' content or layout changes; part of every shard's plan digest.
FORMAT_VERSION = 1


def shard_file_name(split, index, count):
    """``train.tfrecord-00003-of-00016`` for split ``train``, shard 3 of 16."""
    return f"{split}.tfrecord-{index:05d}-of-{count:05d}"


#: Every record holds these features; ``dtype`` is the tf.io.FixedLenFeature dtype, shape ``[]``.
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
        or SHARD_NAME_PATTERN.match(name) is not None
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


def read_sidecar(out):
    """Load ``OUT/dataset.json``.

    Raises
    ------
    SidecarError
        When OUT or the file is missing, or the file is not the JSON we write.
    """
    out = os.fspath(out)
    path = os.path.join(out, SIDECAR_NAME)
    if not os.path.isdir(out):
        raise SidecarError(f"{out} is not a folder; expected the OUT folder of 'tfrecord_tools write'")
    if not os.path.exists(path):
        unfinished = os.path.exists(os.path.join(out, PROGRESS_NAME))
        hint = (
            "a write into it was interrupted: run the same write command again to finish it"
            if unfinished
            else "is it a folder written by 'tfrecord_tools write'?"
        )
        raise SidecarError(f"{path} is missing: {hint}")
    try:
        with open(path, encoding="utf-8") as handle:
            sidecar = json.load(handle)
    except (OSError, ValueError) as error:
        raise SidecarError(f"{path} cannot be read as JSON: {error}") from None
    if not isinstance(sidecar, dict) or "splits" not in sidecar or "classes" not in sidecar:
        raise SidecarError(f"{path} is not a tfrecord_tools sidecar (no 'splits' or 'classes' key)")
    return sidecar
