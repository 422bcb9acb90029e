"""Find the candidate images under SRC, without opening any: class and split folders, links, odd files.

:func:`find_files` walks ``SRC/<class>/...`` or, when every top folder is a split
name, ``SRC/<split>/<class>/...`` (split names: ``train``; ``validation``, also
written ``val`` or ``valid``; ``test``; see :data:`SPLIT_NAMES`. A mix of split
names and other folders is refused). It follows symbolic links but never twice
into the same folder (a symlink loop is reported, not followed forever), and
never into SRC's own folders (SRC, a split folder, a class folder or anything
inside one: those images are read in their own place, under their own label);
skips hidden files and folders and anything that is not a regular file, with a
reason; and refuses two class names that differ only in Unicode form (NFC and
NFD ``café``).
"""

import contextlib
import dataclasses
import errno
import os
import stat
import unicodedata
from pathlib import Path

from .errors import SourceFolderError, quoted

#: Top-level folder names that mean SRC is already split, and the split each one names. They are
#: compared without regard to case: ``Train/``, ``TRAIN/``, Kaggle's ``training_set/`` all mean train.
SPLIT_NAMES = {
    "train": "train", "training": "train", "train_set": "train", "training_set": "train",
    "validation": "validation", "val": "validation", "valid": "validation", "validation_set": "validation",
    "val_set": "validation", "valid_set": "validation", "dev": "validation",
    "test": "test", "testing": "test", "test_set": "test", "testing_set": "test",
}


def split_of(folder_name):
    """The split a top-level folder name stands for (``"Training_Set"`` -> ``"train"``), or None."""
    return SPLIT_NAMES.get(folder_name.lower())


@dataclasses.dataclass(frozen=True)
class Rejected:
    """A path that will not be written, and why.

    ``category`` is one of: hidden, not_a_file, broken_link, symlink_loop (a
    cycle of links, a folder reached twice, or a link back into SRC's own
    folders), outside_class_folder, output_folder (the writing write's own
    output, reached through a link or a mount), preview_only, unreadable,
    empty, not_an_image, corrupt, too_large. The last five are
    :data:`tfrecord_tools.scan.BAD_IMAGE_CATEGORIES`.
    """

    relative_path: str
    reason: str
    category: str

    def as_json(self):
        return {"path": self.relative_path, "category": self.category, "reason": self.reason}




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

    def __init__(self, source_root, exclude=()):
        self.source_root = source_root
        self.source_real = os.path.realpath(source_root)
        self.keys = {}  # (device, inode) -> description
        self.class_roots = {}  # real path of a class folder -> description
        self.add(source_root, "SRC itself")
        # Folders never read, by device and inode: the output folder of the write that scans
        # (reached through a link below a class folder, its shards and contact sheets would be photos).
        self.excluded = set()
        for path in exclude:
            with contextlib.suppress(OSError):
                self.excluded.add(_folder_key(path))

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
        f"following it would read them again, labelled {quoted(class_name)}. Not followed",
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
    if key in own.excluded:
        rejected.append(Rejected(_relative(folder, source_root), "the output folder of this write (reached "
                                 "through a symbolic link or a mount): not read", "output_folder"))
        return []
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
            rejected.append(_unreachable(entry, relative, error))
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
    """Sorted non-hidden sub-folders of ``folder`` (links to folders too); everything else is rejected."""
    folders = []
    for entry in _list_dir(folder):
        relative = _relative(entry.path, source_root)
        if _is_hidden(entry.name):
            kind = "folder" if entry.is_dir(follow_symlinks=False) else "file"
            rejected.append(Rejected(relative, f"hidden {kind} (name starts with '.')", "hidden"))
            continue
        try:
            is_folder = stat.S_ISDIR(os.stat(entry.path).st_mode)  # follows a symlink to a folder
        except OSError as error:
            rejected.append(_unreachable(entry, relative, error))
            continue
        if is_folder:
            folders.append(entry)
        else:
            rejected.append(
                Rejected(relative, "not inside a class folder (expected SRC/<class>/<image>)",
                         "outside_class_folder")
            )
    return folders


def _unreachable(entry, relative, error):
    """Why an entry that cannot be stat'ed is skipped: a link loop, a broken link, or an error."""
    if error.errno == errno.ELOOP:  # a link that points to itself, or a cycle of links
        return Rejected(relative, "symbolic link loop", "symlink_loop")
    if entry.is_symlink():
        return Rejected(relative, f"broken symbolic link to {quoted(os.readlink(entry.path))}", "broken_link")
    return Rejected(relative, f"cannot stat: {error.strerror}", "unreadable")


def _nothing_usable(rejected):
    """What SRC's top level held instead of class folders, in words: "1 hidden folder skipped (.git)"."""
    if not rejected:
        return "nothing: the folder is empty"
    kinds = {}
    for item in rejected:
        kind = {"hidden": item.reason.split(" (")[0], "outside_class_folder": "file outside a class folder",
                "broken_link": "broken symbolic link", "symlink_loop": "symbolic link loop"}.get(item.category,
                                                                                           "unreadable entry")
        kinds.setdefault(kind, []).append(item.relative_path)
    parts = []
    for kind, names in kinds.items():
        shown = ", ".join(names[:3]) + (" ..." if len(names) > 3 else "")
        parts.append(f"{len(names)} {kind}{'s' if len(names) > 1 else ''} ({shown})")
    return "nothing usable: " + "; ".join(parts) + " skipped"


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
                f"class folders {first.path} ({quoted(first.name, True)}) and {entry.path} "
                f"({quoted(entry.name, True)}) have "
                "the same name written in two Unicode forms (NFC and NFD; macOS writes NFD): they would be two "
                "classes that look alike. Rename or merge one of them"
            )


def find_files(source, exclude=()):
    """Walk SRC and list candidate files, without opening any of them.

    Parameters
    ----------
    source : str or Path
        SRC, laid out as ``SRC/<class>/...`` or ``SRC/<split>/<class>/...``.
    exclude : iterable of str
        Folders never entered, recognised by device and inode wherever a link or
        a mount shows them (a write's output folder); each is listed as rejected.

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
        raise SourceFolderError(
            f"{source_root} holds no class folders: expected SRC/<class>/<image> "
            f"(or SRC/train/<class>/<image>); found {_nothing_usable(rejected)}"
        )
    layout, groups = _groups(source_root, top_folders, rejected)
    _refuse_unicode_twins(groups)
    own = _OwnFolders(source_root, exclude)
    for _, split_entry, _ in groups:
        if split_entry is not None:
            own.add(split_entry.path, f"the split folder {quoted(split_entry.name)}")
    accepted = []
    # Real class folders first, then links to folders, which must not lead to any of them.
    for split, _, class_entry in sorted(groups, key=lambda group: group[2].is_symlink()):
        relative = _relative(class_entry.path, source_root)
        problem = own.link_problem(class_entry.path) if class_entry.is_symlink() else None
        if problem is not None:
            rejected.append(_link_rejection(relative, problem, class_entry.name))
            continue
        own.add(class_entry.path, f"the class folder {quoted(relative)}", is_class=True)
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


def own_folders(source):
    """SRC, its split folders and its class folders, by device and inode (links and mounts followed).

    Returns
    -------
    dict
        ``(device, inode)`` to a description ("the class folder /data/src/cat"):
        what a write's output folder must not lie in, however it is reached.

    Raises
    ------
    SourceFolderError
        SRC mixes split folders with other folders (as :func:`find_files` does).
    """
    source_root = os.path.abspath(os.fspath(source))
    folders = {_folder_key(source_root): f"the source folder {source_root}"}
    top_folders = _class_folders(source_root, source_root, [])
    if top_folders:
        for _, split_entry, class_entry in _groups(source_root, top_folders, [])[1]:
            for kind, entry in (("split", split_entry), ("class", class_entry)):
                if entry is not None:
                    with contextlib.suppress(OSError):
                        folders.setdefault(_folder_key(entry.path), f"the {kind} folder {entry.path}")
    return folders


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
            warnings.append(f"class name {quoted(name, True)} holds {' and '.join(issues)}: it prints like another "
                            "name")
        skeleton = "".join(character for character in unicodedata.normalize("NFKC", name)
                           if unicodedata.category(character) not in ("Cf", "Cc")).strip().casefold()
        by_skeleton.setdefault(skeleton, []).append(name)
    for names in by_skeleton.values():
        if len(names) > 1:
            warnings.append(f"class names {', '.join(quoted(name, True) for name in names)} look alike but are "
                            f"{len(names)} classes; rename or merge the folders if they are one class")
    return warnings
