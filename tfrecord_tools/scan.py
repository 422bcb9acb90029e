"""Find the images under ``SRC/<class>/...`` and decode-check every one of them.

:func:`scan_images` is usable on its own (the Oregon Wildlife assignment uses it
to drop what cannot be decoded) and is the first step of ``write``. It

1. walks ``SRC/<class>/...`` or, when every top folder is a split name,
   ``SRC/<split>/<class>/...`` (split names: ``train``; ``validation``, also
   written ``val`` or ``valid``; ``test``. A mix of split names and other
   folders is refused); follows symbolic links but never twice into the same
   folder (a symlink loop is reported, not followed forever), and never into
   SRC's own folders (SRC, a split folder, a class folder or anything inside
   one: those images are read in their own place, under their own label);
   skips hidden files and folders and anything that is not a regular file, with
   a reason; refuses two class names that differ only in Unicode form (NFC and
   NFD ``café``);
2. reads each file, sniffs its format from content, decodes it fully and hashes
   it (SHA-256), in a pool of worker processes;
3. returns the good files, sorted by path, with 0-based labels from the sorted
   class names, and every rejected path with its reason.
"""

import dataclasses
import errno
import os
import stat
import unicodedata
from pathlib import Path

from . import _pool
from .encode import DEFAULT_MAX_PIXELS, ImageCheckError, _describe_unknown, check_image, sniff_format
from .errors import BadImageError, SourceFolderError

#: Top-level folder names that mean SRC is already split, and the split each one names. They are
#: compared without regard to case: ``Train/``, ``TRAIN/``, Kaggle's ``training_set/`` all mean train.
SPLIT_NAMES = {
    "train": "train", "training": "train", "train_set": "train", "training_set": "train",
    "validation": "validation", "val": "validation", "valid": "validation", "validation_set": "validation",
    "val_set": "validation", "valid_set": "validation", "dev": "validation",
    "test": "test", "testing": "test", "test_set": "test", "testing_set": "test",
}
#: Rejection categories of files that are bad images (``on_error="stop"`` stops at these only).
BAD_IMAGE_CATEGORIES = ("unreadable", "empty", "not_an_image", "corrupt", "too_large")
#: What a worker reports for a good file (check_image's keys, then the file size).
_CHECKED_FIELDS = ("source_format", "mode", "height", "width", "channels", "reencode", "sha256", "frames",
                   "resized", "num_bytes")
#: Bytes read first from every file: enough to sniff the format, so a video is never read whole.
_HEAD_BYTES = 64


def split_of(folder_name):
    """The split a top-level folder name stands for (``"Training_Set"`` -> ``"train"``), or None."""
    return SPLIT_NAMES.get(folder_name.lower())
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


@dataclasses.dataclass(frozen=True)
class Rejected:
    """A path that will not be written, and why.

    ``category`` is one of: hidden, not_a_file, broken_link, symlink_loop (a
    cycle of links, a folder reached twice, or a link back into SRC's own
    folders), outside_class_folder, unreadable, empty, not_an_image, corrupt,
    too_large. The last five are :data:`BAD_IMAGE_CATEGORIES`.
    """

    relative_path: str
    reason: str
    category: str

    def as_json(self):
        return {"path": self.relative_path, "category": self.category, "reason": self.reason}


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
# Walking the folders (parent process; cheap: no file is opened here).


def _is_hidden(name):
    return name.startswith(".")


def _relative(path, root):
    # Every path we build starts with root (links are followed by name, not resolved),
    # so slicing is exact and much cheaper than os.path.relpath for 60,000 files.
    if path.startswith(root + os.sep):
        relative = path[len(root) + 1 :]
    else:  # pragma: no cover - defensive
        relative = os.path.relpath(path, root)
    return relative if os.sep == "/" else Path(relative).as_posix()


def _list_dir(folder):
    try:
        return sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError as error:
        raise SourceFolderError(f"cannot list folder {folder}: {error.strerror}") from None


def _folder_key(path):
    info = os.stat(path)  # follows symbolic links
    return info.st_dev, info.st_ino


class _OwnFolders:
    """SRC, its split folders and its class folders: each is read in its own place only.

    A symbolic link that leads to one of them, into one of the class folders, or
    to a folder that holds SRC would read images a second time under another
    label (``SRC/cat/up -> ..`` would label the dog images cat), so such links are
    reported and not followed.
    """

    def __init__(self, source_root):
        self.source_root = source_root
        self.source_real = os.path.realpath(source_root)
        self.keys = {}  # (device, inode) -> description
        self.class_roots = {}  # real path of a class folder -> description
        self.add(source_root, "SRC itself")

    def add(self, path, description, is_class=False):
        try:
            self.keys[_folder_key(path)] = description
        except OSError:
            return  # the walk reports it as unreadable
        if is_class:
            self.class_roots[os.path.realpath(path)] = description

    def description(self, key):
        return self.keys.get(key)

    def link_problem(self, path):
        """Why the link ``path`` (to a folder) must not be followed, or None."""
        try:
            key = _folder_key(path)
        except OSError:
            return None  # the caller reports it
        if key in self.keys:
            return f"it leads to {self.keys[key]}"
        target = os.path.realpath(path)
        if self.source_real.startswith(target.rstrip(os.sep) + os.sep):
            return f"it leads to {target}, a folder that holds SRC"
        folder = target
        while True:
            if folder in self.class_roots:
                return f"it leads into {self.class_roots[folder]} ({target})"
            parent = os.path.dirname(folder)
            if parent == folder:
                return None
            folder = parent


def _link_rejection(relative, problem, class_name):
    return Rejected(
        relative,
        f"symbolic link back into SRC's own folders: {problem}, whose images are read in their own place; "
        f"following it would read them again, labelled {class_name!r}. Not followed",
        "symlink_loop",
    )


def _walk_class_folder(class_folder, source_root, found, rejected, visited, own, class_name, is_root=False):
    """Collect regular files under one class folder, at any depth.

    ``visited`` holds the (device, inode) of every folder entered (and, from
    the start, of SRC, the split folders and every class folder), so a symlink
    that points back to an ancestor, or to a folder seen already, is entered
    once at most. ``own`` (an :class:`_OwnFolders`) names SRC's own folders: a
    link into one of them is reported and not followed. The walk keeps its own
    stack (no recursion), so any depth works; folders are entered in the same
    order as a recursive walk in sorted order would.
    """
    stack = [(class_folder, is_root)]
    while stack:
        folder, folder_is_root = stack.pop()
        subfolders = _enter_folder(folder, folder_is_root, source_root, found, rejected, visited, own, class_name)
        stack.extend((path, False) for path in reversed(subfolders))


def _enter_folder(folder, is_root, source_root, found, rejected, visited, own, class_name):
    """List one folder: its files go to ``found``; returns its sub-folders to enter, sorted."""
    try:
        info = os.stat(folder)
    except OSError as error:
        rejected.append(Rejected(_relative(folder, source_root), f"cannot open: {error.strerror}", "unreadable"))
        return []
    key = (info.st_dev, info.st_ino)
    if key in visited and not is_root:
        own_folder = own.description(key)
        if own_folder is not None:
            rejected.append(_link_rejection(_relative(folder, source_root), f"it leads to {own_folder}",
                                            class_name))
            return []
        rejected.append(
            Rejected(
                _relative(folder, source_root),
                "symlink loop or repeated folder: it leads to a folder already scanned; not entered again",
                "symlink_loop",
            )
        )
        return []
    visited.add(key)
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError as error:
        rejected.append(Rejected(_relative(folder, source_root), f"cannot list: {error.strerror}", "unreadable"))
        return []
    subfolders = []
    for entry in entries:
        relative = _relative(entry.path, source_root)
        if _is_hidden(entry.name):
            kind = "folder" if entry.is_dir() else "file"
            rejected.append(Rejected(relative, f"hidden {kind} (name starts with '.')", "hidden"))
            continue
        if not entry.is_symlink():
            # d_type from the directory listing: no stat call for the common case.
            if entry.is_file(follow_symlinks=False):
                found.append((entry.path, relative))
                continue
            if entry.is_dir(follow_symlinks=False):
                subfolders.append(entry.path)
                continue
        try:
            entry_stat = os.stat(entry.path)  # follows symlinks
        except OSError as error:
            if error.errno == errno.ELOOP:  # a link that points to itself, or a cycle of links
                rejected.append(Rejected(relative, "symbolic link loop", "symlink_loop"))
            elif entry.is_symlink():
                rejected.append(Rejected(relative, f"broken symbolic link to {os.readlink(entry.path)!r}",
                                         "broken_link"))
            else:
                rejected.append(Rejected(relative, f"cannot stat: {error.strerror}", "unreadable"))
            continue
        if stat.S_ISDIR(entry_stat.st_mode):
            problem = own.link_problem(entry.path) if entry.is_symlink() else None
            if problem is not None:
                rejected.append(_link_rejection(relative, problem, class_name))
                continue
            subfolders.append(entry.path)
        elif stat.S_ISREG(entry_stat.st_mode):
            found.append((entry.path, relative))
        else:
            rejected.append(Rejected(relative, "not a regular file (device, socket or pipe)", "not_a_file"))
    return subfolders


def _class_folders(folder, source_root, rejected):
    """Sorted non-hidden sub-folders of ``folder``; files there are rejected."""
    folders = []
    for entry in _list_dir(folder):
        relative = _relative(entry.path, source_root)
        if _is_hidden(entry.name):
            rejected.append(Rejected(relative, "hidden file or folder (name starts with '.')", "hidden"))
        elif entry.is_dir():  # follows a symlink to a folder
            folders.append(entry)
        else:
            rejected.append(
                Rejected(relative, "not inside a class folder (expected SRC/<class>/<image>)",
                         "outside_class_folder")
            )
    return folders


def _groups(source_root, top_folders, rejected):
    """``(layout, [(split, split folder entry, class folder entry)])``; split is None without split folders."""
    names = [entry.name for entry in top_folders]
    split_named = [name for name in names if split_of(name)]
    if not split_named:
        return "classes", [(None, None, entry) for entry in top_folders]
    if len(split_named) < len(names):
        others = [name for name in names if not split_of(name)]
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise SourceFolderError(
            f"{source_root} mixes split folders ({', '.join(split_named)}) with other folders ({shown}): expected "
            "either only class folders, SRC/<class>/<image>, or only split folders, SRC/<split>/<class>/<image> "
            "(split names, in any case: train, training, training_set; validation, val, valid, dev; test, testing, "
            "test_set). Move the other folders into a split, or "
            "rename a class folder that is called like a split"
        )
    by_split = {}
    for name in split_named:
        by_split.setdefault(split_of(name), []).append(name)
    for split, folders in by_split.items():
        if len(folders) > 1:
            raise SourceFolderError(
                f"{source_root} has {len(folders)} folders for the {split} split ({', '.join(folders)}); "
                "merge them into one"
            )
    groups = []
    source_real = os.path.realpath(source_root)
    for split_entry in top_folders:
        target = os.path.realpath(split_entry.path)
        if split_entry.is_symlink() and (target == source_real or os.path.commonpath([target, source_real])
                                         in (target, source_real)):
            raise SourceFolderError(
                f"split folder {split_entry.path} is a symbolic link back into SRC ({target}): expected a folder "
                f"of class folders, {split_entry.path}/<class>/<image>"
            )
        class_entries = _class_folders(split_entry.path, source_root, rejected)
        if not class_entries:
            raise SourceFolderError(
                f"split folder {split_entry.path} holds no class folders: expected "
                f"{split_entry.path}/<class>/<image>"
            )
        groups.extend((split_of(split_entry.name), split_entry, entry) for entry in class_entries)
    return "splits", groups


def _refuse_unicode_twins(groups):
    """Refuse class names that differ only in Unicode normalisation (NFC "café" and NFD "café")."""
    seen = {}
    for _, _, entry in groups:
        first = seen.setdefault(unicodedata.normalize("NFC", entry.name), entry)
        if first.name != entry.name:
            raise SourceFolderError(
                f"class folders {first.path} ({ascii(first.name)}) and {entry.path} ({ascii(entry.name)}) have "
                "the same name written in two Unicode forms (NFC and NFD; macOS writes NFD): they would be two "
                "classes that look alike. Rename or merge one of them"
            )


def find_files(source):
    """Walk SRC and list candidate files, without opening any of them.

    Parameters
    ----------
    source : str or Path
        SRC, laid out as ``SRC/<class>/...`` or ``SRC/<split>/<class>/...``.

    Returns
    -------
    (layout, class_names, candidates, rejected)
        ``candidates`` is a sorted list of ``(path, relative_path, class_name,
        split)``.

    Raises
    ------
    SourceFolderError
        SRC is missing, not a folder, or holds no class folders; it mixes split
        folders with other folders; or two class names differ only in Unicode form.
    """
    source_root = os.path.abspath(os.fspath(source))
    if not os.path.exists(source_root):
        raise SourceFolderError(f"source folder {source_root} does not exist")
    if not os.path.isdir(source_root):
        raise SourceFolderError(f"source {source_root} is a file; expected a folder SRC/<class>/<image>")
    rejected = []
    top_folders = _class_folders(source_root, source_root, rejected)
    if not top_folders:
        stray = len(rejected)
        raise SourceFolderError(
            f"{source_root} holds no class folders: expected SRC/<class>/<image> "
            f"(or SRC/train/<class>/<image>), found {stray} file(s) and no folder"
        )
    layout, groups = _groups(source_root, top_folders, rejected)
    _refuse_unicode_twins(groups)
    own = _OwnFolders(source_root)
    for _, split_entry, _ in groups:
        if split_entry is not None:
            own.add(split_entry.path, f"the split folder {split_entry.name!r}")
    accepted = []
    # Real class folders first, then links to folders, which must not lead to any of them.
    for split, _, class_entry in sorted(groups, key=lambda group: group[2].is_symlink()):
        relative = _relative(class_entry.path, source_root)
        problem = own.link_problem(class_entry.path) if class_entry.is_symlink() else None
        if problem is not None:
            rejected.append(_link_rejection(relative, problem, class_entry.name))
            continue
        own.add(class_entry.path, f"the class folder {relative!r}", is_class=True)
        accepted.append((split, class_entry))
    accepted.sort(key=lambda group: _relative(group[1].path, source_root))
    visited = set(own.keys)
    candidates = []
    class_names = set()
    for split, class_entry in accepted:
        class_names.add(class_entry.name)
        found = []
        _walk_class_folder(class_entry.path, source_root, found, rejected, visited, own, class_entry.name,
                           is_root=True)
        candidates.extend((path, relative, class_entry.name, split) for path, relative in found)
    candidates.sort(key=lambda candidate: candidate[1])
    rejected.sort(key=lambda item: item.relative_path)
    return layout, sorted(class_names), candidates, rejected


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
                    results.append((relative, None, _describe_unknown(head), category))
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


def look_alike_warnings(class_names):
    """Warnings for class names that print alike: spaces at an end, invisible or fullwidth characters."""
    warnings = []
    by_skeleton = {}
    for name in class_names:
        issues = []
        if name != name.strip():
            issues.append("a space at its start or end")
        if any(unicodedata.category(character) in ("Cf", "Cc") for character in name):
            issues.append("an invisible character (zero-width space, joiner, control character)")
        if unicodedata.normalize("NFKC", name) != name:
            issues.append("fullwidth or other compatibility characters")
        if issues:
            warnings.append(f"class name {ascii(name)} holds {' and '.join(issues)}: it prints like another name")
        skeleton = "".join(character for character in unicodedata.normalize("NFKC", name)
                           if unicodedata.category(character) not in ("Cf", "Cc")).strip().casefold()
        by_skeleton.setdefault(skeleton, []).append(name)
    for names in by_skeleton.values():
        if len(names) > 1:
            warnings.append(f"class names {', '.join(ascii(name) for name in names)} look alike but are "
                            f"{len(names)} classes; rename or merge the folders if they are one class")
    return warnings


def _iterate(chunk_results, progress):
    for results in chunk_results:
        if progress is not None:
            progress.update(len(results))
        yield from results


def scan_images(source, *, workers=None, on_error="skip", max_pixels=DEFAULT_MAX_PIXELS, progress=False,
                max_side=None, apply_orientation=False, _pool_to_use=None, _then=None):
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
        Show a progress bar on stderr.
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
    if on_error not in ("skip", "stop"):
        raise ValueError(f"on_error must be 'skip' or 'stop', got {on_error!r}")
    workers = _pool.usable_workers(workers)
    source_root = os.path.abspath(os.fspath(source))
    layout, class_names, candidates, rejected = find_files(source_root)
    options = {"max_pixels": max_pixels, "max_side": max_side, "apply_orientation": apply_orientation}
    bad = [item for item in rejected if item.category in BAD_IMAGE_CATEGORIES]
    if on_error == "stop" and bad:
        raise BadImageError(f"{os.path.join(source_root, bad[0].relative_path)}: {bad[0].reason}")
    label_to_index = {name: index for index, name in enumerate(class_names)}
    by_relative = {candidate[1]: candidate for candidate in candidates}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(candidates), desc="checking", unit="img", smoothing=0.1)
    images = []
    try:
        checks = _run_checks(candidates, options, workers, _pool_to_use, bar,
                             doing=f"checking the images under {source_root}", then=_then)
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
