"""Decode-check every image under ``SRC/<class>/...``, in worker processes.

:func:`scan_images` is usable on its own (the Oregon Wildlife assignment uses it
to drop what cannot be decoded) and is the first step of ``write``. It

1. finds the candidate files (:func:`tfrecord_tools.find.find_files`: class and
   split folders, links, hidden and odd files, each skipped file with a reason);
2. reads each file, sniffs its format from content, decodes it fully and hashes
   it (SHA-256), in a pool of worker processes;
3. returns the good files, sorted by path, with 0-based labels from the sorted
   class names, and every rejected path with its reason.
"""

import dataclasses
import os

from . import _pool
from .encode import DEFAULT_MAX_PIXELS, ImageCheckError, check_image
from .errors import BadImageError
from .find import SPLIT_NAMES, Rejected, find_files, look_alike_warnings, split_of
from .progress import progress_bar
from .sniff import describe_unknown, sniff_format

# find.py defines these; callers import them from here too (common/datasets/wildlife.py: find_files).
__all__ = ["BAD_IMAGE_CATEGORIES", "SPLIT_NAMES", "ImageFile", "Rejected", "ScanResult", "find_files", "scan_images",
           "scan_in_pool", "split_of"]

#: Rejection categories of files that are bad images (``on_error="stop"`` stops at these only).
BAD_IMAGE_CATEGORIES = ("unreadable", "empty", "not_an_image", "corrupt", "too_large")
#: What a worker reports for a good file (check_image's keys, then the file size).
_CHECKED_FIELDS = ("source_format", "mode", "height", "width", "channels", "reencode", "sha256", "frames",
                   "resized", "num_bytes")
#: Bytes read first from every file: enough to sniff the format, so a video is never read whole.
_HEAD_BYTES = 64
#: Files per task sent to a worker: large enough to amortise the IPC round trip.
_CHUNK_FILES = 256


@dataclasses.dataclass(frozen=True)
class ImageFile:
    """One source image that passed the decode check.

    Attributes
    ----------
    path : str
        Absolute path of the file.
    relative_path : str
        Path relative to SRC with ``/`` separators (stored as ``image/filename``).
    class_name : str
        Name of the class folder.
    label : int
        Index of ``class_name`` in the sorted class names.
    split : str or None
        ``train``/``validation``/``test`` when SRC is already split (a ``val/`` or
        ``Valid/`` folder gives ``validation``, see :data:`SPLIT_NAMES`), else None.
    source_format : str
        Format sniffed from the content: jpeg, png, gif, bmp, webp or tiff.
    mode : str
        Pillow's pixel mode of the decoded image (RGB, L, CMYK, RGBA, I;16, ...).
    height, width : int
        Size in pixels of the stored image (after ``max_side`` and orientation).
    channels : int
        Channels of the stored JPEG: 1 (kept grayscale JPEG) or 3.
    reencode : bool
        True when the stored bytes are an RGB JPEG re-encoding of the source.
    sha256 : str
        Hex SHA-256 of the source file's bytes.
    frames : int
        Frames or pages in the file (animated GIF/WebP/PNG, multi-page TIFF); the
        first is stored.
    resized : bool
        True when ``max_side`` made it smaller.
    num_bytes : int
        Size of the source file.
    """

    path: str
    relative_path: str
    class_name: str
    label: int
    split: str | None
    source_format: str
    mode: str
    height: int
    width: int
    channels: int
    reencode: bool
    sha256: str
    frames: int
    resized: bool
    num_bytes: int


@dataclasses.dataclass
class ScanResult:
    """What :func:`scan_images` found.

    Attributes
    ----------
    source : str
        Absolute path of SRC.
    layout : str
        ``"classes"`` (SRC/<class>/...) or ``"splits"`` (SRC/<split>/<class>/...).
    class_names : list of str
        Sorted; ``label_to_index[name]`` is the position in this list.
    images : list of ImageFile
        Good files, sorted by relative path.
    rejected : list of Rejected
        Everything else that was found, sorted by relative path.
    warnings : list of str
        Things a person should look at: class names that look alike.
    """

    source: str
    layout: str
    class_names: list
    images: list
    rejected: list
    warnings: list = dataclasses.field(default_factory=list)

    @property
    def label_to_index(self):
        return {name: index for index, name in enumerate(self.class_names)}

    def paths_and_labels(self, split=None):
        """Good files as two parallel lists ``(paths, labels)``, optionally of one split."""
        chosen = [image for image in self.images if split is None or image.split == split]
        return [image.path for image in chosen], [image.label for image in chosen]

    def class_counts(self):
        """``{class name: number of good images}``, zero for empty classes."""
        counts = dict.fromkeys(self.class_names, 0)
        for image in self.images:
            counts[image.class_name] += 1
        return counts


# ---------------------------------------------------------------------------
# Checking the files (worker processes).


def _check_chunk(task):
    """Worker: read, sniff, decode and hash each file of a chunk.

    Parameters
    ----------
    task : (list of (path, relative_path), dict)
        Files, and the keyword arguments of :func:`check_image` (``max_pixels``, ...).

    Returns
    -------
    list of (relative_path, tuple or None, reason or None, category or None)
        The tuple holds the values of ``_CHECKED_FIELDS``.
    """
    files, options = task
    results = []
    for path, relative in files:
        try:
            with open(path, "rb") as handle:
                head = handle.read(_HEAD_BYTES)
                if sniff_format(head[:16]) is None:  # a video or an archive is never read whole
                    category = "empty" if not head else "not_an_image"
                    results.append((relative, None, describe_unknown(head), category))
                    continue
                data = head + handle.read()
        except OSError as error:
            results.append((relative, None, f"cannot read: {error.strerror}", "unreadable"))
            continue
        except MemoryError:
            results.append((relative, None, "not enough memory to read the file", "too_large"))
            continue
        try:
            checked = check_image(data, **options)
            # A tuple in _CHECKED_FIELDS order pickles in about half the time of the dict.
            results.append((relative, (*(checked[name] for name in _CHECKED_FIELDS[:-1]), len(data)), None, None))
        except ImageCheckError as error:
            results.append((relative, None, error.reason, error.category))
        except MemoryError:
            results.append((relative, None, "not enough memory to decode the image (lower max_pixels, or use "
                            "fewer workers)", "too_large"))
        finally:
            del data
    return results


def _run_checks(candidates, options, workers, pool, progress, doing, then):
    chunks = [
        ([(path, relative) for path, relative, *_ in candidates[start : start + _CHUNK_FILES]], options)
        for start in range(0, len(candidates), _CHUNK_FILES)
    ]
    if pool is None and workers > 1 and len(chunks) > 1:
        with _pool.start_pool(min(workers, len(chunks))) as own_pool:
            yield from _iterate(own_pool.map(_check_chunk, chunks, doing=doing, then=then), progress)
        return
    if pool is not None and len(chunks) > 1:
        yield from _iterate(pool.map(_check_chunk, chunks, doing=doing, then=then), progress)
        return
    yield from _iterate(map(_check_chunk, chunks), progress)


def _iterate(chunk_results, progress):
    for results in chunk_results:
        if progress is not None:
            progress.update(len(results))
        yield from results


def scan_images(source, *, workers=None, on_error="skip", max_pixels=DEFAULT_MAX_PIXELS, progress=False,
                max_side=None, apply_orientation=False):
    """Find and decode-check every image under SRC.

    Parameters
    ----------
    source : str or Path
        ``SRC/<class>/...`` or ``SRC/<split>/<class>/...`` (split names: train;
        validation, val or valid; test).
    workers : int, optional
        Worker processes for the decode check; default: all CPU cores.
        1 checks in this process.
    on_error : {"skip", "stop"}
        ``"skip"`` lists bad files in ``rejected``; ``"stop"`` raises at the
        first bad image (in path order) instead: one of
        :data:`BAD_IMAGE_CATEGORIES`. Hidden files, links not followed and other
        things the walk skips are listed in ``rejected`` either way.
    max_pixels : int
        Files with more pixels are rejected before decoding.
    progress : bool
        Show progress on stderr: a bar on a terminal, else one line when the check ends.
    max_side : int, optional
        Describe images as stored with their longer side at most this (``height``,
        ``width``); see :func:`tfrecord_tools.write_dataset`.
    apply_orientation : bool
        Describe images as turned upright by their EXIF orientation.

    Returns
    -------
    ScanResult

    Raises
    ------
    SourceFolderError
        SRC missing, not a folder, or without class folders (see :func:`find_files`).
    WorkerDiedError
        A worker process died (killed for memory?).
    BadImageError
        With ``on_error="stop"``, naming the first bad file and the reason.
    """
    workers = _pool.usable_workers(workers)  # here, so that its warning points at the caller
    return scan_in_pool(source, None, workers=workers, on_error=on_error, max_pixels=max_pixels, progress=progress,
                        max_side=max_side, apply_orientation=apply_orientation)


def scan_in_pool(source, pool, *, then=None, exclude=(), workers=None, on_error="skip",
                 max_pixels=DEFAULT_MAX_PIXELS, progress=False, max_side=None, apply_orientation=False):
    """:func:`scan_images` in the caller's worker pool (``write`` checks and writes in one pool).

    ``pool`` is a :class:`~tfrecord_tools._pool.WorkerPool`, or None for one of our
    own when ``workers`` is above 1; ``then`` says what to do after a worker died;
    ``exclude`` lists folders never read (see :func:`~tfrecord_tools.find.find_files`).
    """
    if on_error not in ("skip", "stop"):
        raise ValueError(f"on_error must be 'skip' or 'stop', got {on_error!r}")
    workers = _pool.usable_workers(workers)
    source_root = os.path.abspath(os.fspath(source))
    layout, class_names, candidates, rejected = find_files(source_root, exclude)
    options = {"max_pixels": max_pixels, "max_side": max_side, "apply_orientation": apply_orientation}
    bad = [item for item in rejected if item.category in BAD_IMAGE_CATEGORIES]
    if on_error == "stop" and bad:
        raise BadImageError(f"{os.path.join(source_root, bad[0].relative_path)}: {bad[0].reason}")
    label_to_index = {name: index for index, name in enumerate(class_names)}
    by_relative = {candidate[1]: candidate for candidate in candidates}
    bar = progress_bar(len(candidates), "checking") if progress else None
    images = []
    try:
        checks = _run_checks(candidates, options, workers, pool, bar,
                             doing=f"checking the images under {source_root}", then=then)
        for relative, checked, reason, category in checks:
            if checked is None:
                if on_error == "stop":
                    raise BadImageError(f"{os.path.join(source_root, relative)}: {reason}")
                rejected.append(Rejected(relative, reason, category))
                continue
            path, _, class_name, split = by_relative[relative]
            images.append(
                ImageFile(
                    path=path,
                    relative_path=relative,
                    class_name=class_name,
                    label=label_to_index[class_name],
                    split=split,
                    **dict(zip(_CHECKED_FIELDS, checked, strict=True)),
                )
            )
    finally:
        if bar is not None:
            bar.close()
    rejected.sort(key=lambda item: item.relative_path)
    return ScanResult(source_root, layout, class_names, images, rejected, look_alike_warnings(class_names))
