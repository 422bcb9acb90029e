"""The Keras dataset cache: where it is, what this course writes into it, listing and cleaning it.

The cache is ``$KERAS_HOME/datasets`` (default ``~/.keras/datasets``), shared with
``keras.datasets.*.load_data()``. This course writes into it:

* the downloads (``mnist.npz``, ``fashion-mnist/``, ``cifar-10-python.tar.gz``) and
  the extracted ``cifar-10-batches-py/``;
* for a CIFAR-10 image folder, its decoded arrays ``cifar10-from-images-<key>.npz``
  (decoded once, reused while the folder is unchanged) and, for the code that reads
  batch files, ``cifar-10-batches-py-from-images-<key>/``;
* ``cifar-10-batches-py-from-<key>/`` for an archive outside the cache,
  ``cifar-10-batches-py-standin-*`` for the stand-in and
  ``cifar-10-batches-py-limit<N>-*`` for a ``--limit`` subset in batch files;
* ``cifar10-png-demo-<N>-<key>/``, PNG files of one batch file for the pipelines
  that read image files.

Each entry it writes is recorded in :data:`MANIFEST`, so that
``python -m common.datasets cache --clean`` removes what this course wrote and
never a file that Keras or a person put there. Entries whose names only this
course makes (:data:`OWN_PATTERNS`) count as its own even without the record.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from common.datasets.downloads import reason
from common.datasets.formats import (
    decode_images,
    list_image_folder,
    read_cifar10_batch,
    read_cifar10_class_names,
    rows_to_images,
)
from common.datasets.sources import (
    CIFAR10_CLASSES,
    CIFAR10_FOLDER,
    CIFAR10_TEST_BATCH,
    CIFAR10_TRAIN_BATCHES,
    REMOTE_FILES,
)
from common.datasets.splits import CifarBatches, ImageSplits
from common.errors import UserError
from common.files import atomic_folder, atomic_path

MANIFEST = ".written-by-common-datasets"
OWN_PATTERNS = [  # names that only this course gives to cache entries
    "cifar10-from-images-*.npz",
    f"{CIFAR10_FOLDER}-from-*",
    f"{CIFAR10_FOLDER}-standin-*",
    f"{CIFAR10_FOLDER}-limit*",
    "oregon_wildlife_standin_*",
    "cifar10-png-demo-*",
    ".*.partial",  # a temporary name of ours, left by a run that was killed
]


def cache_dir() -> Path:
    """The Keras dataset cache: ``$KERAS_HOME/datasets`` or ``~/.keras/datasets``."""
    home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser()
    return home / "datasets"


# --- What this course wrote -------------------------------------------------------------------


def register(path: str | os.PathLike) -> None:
    """Record that this course wrote ``path`` (in the cache), so ``cache --clean`` may remove it."""
    entry = _top_entry(Path(path))
    if entry is None or entry in _recorded():
        return
    cache_dir().mkdir(parents=True, exist_ok=True)
    with open(cache_dir() / MANIFEST, "a", encoding="utf-8") as handle:  # one short append: safe between runs
        handle.write(entry + "\n")


def record_write(path: str | os.PathLike, what: str) -> None:
    """Record ``path`` as this course's (:func:`register`) and say so in one line.

    Every write into the cache ends here, so each one is announced once and alike:
    what it holds, where, how big, and that later runs reuse it.
    """
    register(path)
    print(f"cached {what} in {path} ({human_size(_size(Path(path)))}); later runs reuse it "
          "(python -m common.datasets cache lists and cleans the cache)", flush=True)


def is_own(path: str | os.PathLike) -> bool:
    """True when ``path`` lies in a cache entry that this course wrote."""
    entry = _top_entry(Path(path))
    if entry is None:
        return False
    return entry in _recorded() or any(fnmatch.fnmatch(entry, pattern) for pattern in OWN_PATTERNS)


def fix_advice(path: str | os.PathLike, what: str = "a good copy") -> str:
    """What to tell someone about a bad file: delete it only when it is this course's own cache entry."""
    path = Path(path)
    if is_own(path):
        entry = cache_dir() / _top_entry(path)
        return (f"{entry} is in the cache and was written by this course: delete it "
                "(python -m common.datasets cache --clean) and run again to download or rebuild it.")
    return f"Replace {path} with {what}."


@contextmanager
def advice_for(path: str | os.PathLike, what: str = "a good copy") -> Iterator[None]:
    """Add :func:`fix_advice` to any :class:`UserError` raised inside."""
    try:
        yield
    except UserError as error:
        raise UserError(f"{error} {fix_advice(path, what)}") from None


def _top_entry(path: Path) -> str | None:
    cache = cache_dir().resolve()
    try:
        relative = path.resolve().relative_to(cache)
    except ValueError:
        return None
    return relative.parts[0] if relative.parts else None


def _recorded() -> set[str]:
    try:
        return {line.strip() for line in (cache_dir() / MANIFEST).read_text(encoding="utf-8").splitlines()
                if line.strip()}
    except OSError:
        return set()


# --- Listing and cleaning ---------------------------------------------------------------------


def cache_entries() -> list[dict]:
    """Every entry of the cache: ``{"name", "path", "bytes", "own"}``, largest first."""
    folder = cache_dir()
    if not folder.is_dir():
        return []
    entries = []
    for path in folder.iterdir():
        if path.name == MANIFEST:
            continue
        entries.append({"name": path.name, "path": path, "bytes": _size(path), "own": is_own(path)})
    return sorted(entries, key=lambda entry: (-entry["bytes"], entry["name"]))


def clean_cache(names: list[str] | None = None) -> list[dict]:
    """Remove this course's entries from the cache (all of them, or those named). Returns what was removed.

    Raises
    ------
    UserError
        A name that is not in the cache, or that this course did not write.
    """
    entries = {entry["name"]: entry for entry in cache_entries()}
    if names:
        for name in names:
            if name not in entries:
                raise UserError(f"{name!r} is not in the cache {cache_dir()}: "
                                "python -m common.datasets cache lists what is there")
            if not entries[name]["own"]:
                raise UserError(f"{cache_dir() / name} was not written by this course (Keras or you put it "
                                "there), so cache --clean leaves it alone")
        chosen = [entries[name] for name in names]
    else:
        chosen = [entry for entry in entries.values() if entry["own"]]
    for entry in chosen:
        path = entry["path"]
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    removed = {entry["name"] for entry in chosen}
    kept = sorted(_recorded() - removed)
    manifest = cache_dir() / MANIFEST
    if manifest.exists():
        with atomic_path(manifest) as temporary:
            temporary.write_text("".join(f"{name}\n" for name in kept), encoding="utf-8")
    return chosen


def _size(path: Path) -> int:
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


def human_size(size: int) -> str:
    """``185_000_000`` -> ``"176.4 MiB"`` (binary units, as ``du -h`` counts)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


# --- Keys -------------------------------------------------------------------------------------


def folder_key(path: Path) -> str:
    """A short key for a data source: its resolved path and what it holds.

    For a file (an archive), its size and modification time; for a folder, the
    relative path, size and modification time of every file below it, so adding,
    removing or replacing one image makes a new key (and a new cache). Listing
    the 60,000 CIFAR-10 JPEGs takes a fraction of a second.
    """
    resolved = Path(path).resolve()
    digest = hashlib.sha256(f"v3:{resolved}".encode())  # bump v3 when the cached layout changes
    if resolved.is_file():
        status = resolved.stat()
        digest.update(f":{status.st_size}:{status.st_mtime_ns}".encode())
    else:
        for folder, subfolders, files in os.walk(resolved):
            subfolders.sort()
            for name in sorted(files):
                status = os.stat(os.path.join(folder, name))
                relative = os.path.relpath(os.path.join(folder, name), resolved)
                digest.update(f"\n{relative}:{status.st_size}:{status.st_mtime_ns}".encode(errors="surrogateescape"))
    return digest.hexdigest()[:12]


# --- CIFAR-10: extraction and the image-folder cache ------------------------------------------


def extract_cifar10(archive: Path) -> CifarBatches:
    """Extract the archive's batches into the cache, all or nothing."""
    target = cache_dir() / CIFAR10_FOLDER
    if archive.resolve().parent != cache_dir().resolve():
        target = cache_dir() / f"{CIFAR10_FOLDER}-from-{folder_key(archive)}"
    remote = REMOTE_FILES["cifar10"]
    if not (target / CIFAR10_TEST_BATCH).is_file():
        wanted = {*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH, "batches.meta"}
        with advice_for(archive, f"a good copy of {remote.url} ({remote.checksum()})"):
            try:
                with atomic_folder(target) as staging:
                    print(f"extracting {archive}", flush=True)
                    with tarfile.open(archive, "r:gz") as tar:
                        found = set()
                        for member in tar:
                            name = Path(member.name).name
                            if member.isfile() and name in wanted:
                                (staging / name).write_bytes(tar.extractfile(member).read())
                                found.add(name)
                    missing = wanted - found - {"batches.meta"}
                    if missing:
                        raise UserError(f"{archive} is not the CIFAR-10 python archive: it lacks {sorted(missing)}.")
                    for name in found - {"batches.meta"}:
                        read_cifar10_batch(staging / name)  # a damaged pickle fails here, not in training
            except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
                raise UserError(f"{archive} is truncated or corrupt ({reason(error)}).") from None
        record_write(target, f"the batch files extracted from {archive.name}")
    return CifarBatches(target, read_cifar10_class_names(target, CIFAR10_CLASSES),
                        f"{archive.name} ({archive})", False)


def cifar10_from_image_folder(folder: Path) -> ImageSplits:
    """Read ``train/<class>/*`` and ``test/<class>/*`` 32x32 images, decoding them once into a cached .npz."""
    cached = cache_dir() / f"cifar10-from-images-{folder_key(folder)}.npz"
    source = f"image folder ({folder})"
    if cached.is_file():
        try:
            with np.load(cached, allow_pickle=False) as archive:
                return ImageSplits(archive["x_train"], archive["y_train"], archive["x_test"], archive["y_test"],
                                   [str(name) for name in archive["class_names"]], "cifar10", source)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as error:
            # Damaged (a disk filled up, a copy cut short): it is our own cache, so rebuild it.
            print(f"the cache {cached} is damaged ({reason(error)}); decoding the images again", flush=True)
    class_names, files = list_image_folder(folder)
    count = sum(len(paths) for paths, _ in files.values())
    print(f"decoding the {count:,} image files in {folder}, once", flush=True)
    arrays = {}
    for split, (paths, labels) in files.items():
        # Folders list images class by class; the real batches are in random order, and
        # a class-sorted array defeats shuffle buffers and front slices. A fixed
        # permutation gives every run the same, well-mixed order.
        order = np.random.default_rng(0).permutation(len(paths))
        arrays[f"x_{split}"] = decode_images([paths[index] for index in order], f"decode {split} images")
        arrays[f"y_{split}"] = np.asarray(labels, dtype=np.int64)[order]
    with atomic_path(cached) as temporary:
        with open(temporary, "wb") as handle:
            np.savez(handle, class_names=np.asarray(class_names), **arrays)
    record_write(cached, f"the decoded images of {folder}")
    return ImageSplits(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"],
                       class_names, "cifar10", source)


def cifar10_png_folder(batch_file: Path, class_names: list[str], per_class: int) -> Path:
    """A folder ``<class>/<NNNN>.png`` of the first ``per_class`` images of each class in one batch file.

    For the pipelines that read image files (``Dataset.list_files``,
    ``image_dataset_from_directory``) when the data came as batch files. Written
    once into the cache, all or nothing, and reused while the batch file's pixels
    stay the same (the key is their hash).
    """
    from PIL import Image

    rows, labels = read_cifar10_batch(batch_file)
    key = hashlib.sha256(rows.tobytes()).hexdigest()[:12]
    folder = cache_dir() / f"cifar10-png-demo-{per_class}-{key}"
    if folder.is_dir():
        return folder
    images = rows_to_images(rows)
    with atomic_folder(folder) as staging:
        for label, class_name in enumerate(class_names):
            (staging / class_name).mkdir()
            for number, index in enumerate(np.flatnonzero(labels == label)[:per_class]):
                Image.fromarray(images[index]).save(staging / class_name / f"{number:04d}.png")
    record_write(folder, f"{sum(1 for _ in folder.glob('*/*.png'))} PNG files of {Path(batch_file).name}")
    return folder
