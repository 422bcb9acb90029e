"""The loaders the scripts call: :func:`load_mnist`, :func:`load_cifar10`, :func:`cifar10_batches`.

Each looks, in order, in ``data_dir`` (or ``$LAB_DATA_DIR``), the Keras cache,
the download (or the ``LAB_DATA_MIRROR``), and then, with ``data="auto"`` only,
the stand-in. See :mod:`common.datasets` for the accepted layouts.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from common.datasets import cache, downloads, formats, sources, standins
from common.datasets.sources import (
    CIFAR10_ARCHIVE,
    CIFAR10_FOLDER,
    CIFAR10_TEST_BATCH,
    DATA_CHOICES,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_FOLDER,
    IDX_FILES,
    MNIST_CLASSES,
    MNIST_NPZ,
)
from common.datasets.splits import CifarBatches, ImageSplits
from common.errors import UserError

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")


def load_mnist(
    data: str = "auto",
    data_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    seed: int = 0,
    dataset: str = "mnist",
) -> ImageSplits:
    """MNIST or Fashion-MNIST as uint8 arrays ``(60000, 28, 28)`` and ``(10000, 28, 28)``.

    Parameters
    ----------
    data : {"auto", "real", "standin"}
    data_dir : path, optional
        Folder with ``mnist.npz`` or the four IDX files (see :mod:`common.datasets`);
        default ``$LAB_DATA_DIR`` when set.
    limit : int, optional
        ``--limit``: this many training images, stratified and seeded, and a
        proportional test share (:mod:`common.datasets.limits`).
    seed : int
    dataset : {"mnist", "fashion_mnist"}

    Raises
    ------
    UserError
        ``data_dir`` holds nothing usable, a file is corrupt, ``limit`` leaves a
        class out, or ``data="real"`` and the dataset cannot be found or downloaded.
    """
    _check_choice("data", data, DATA_CHOICES)
    _check_choice("dataset", dataset, ("mnist", "fashion_mnist"))
    class_names = MNIST_CLASSES if dataset == "mnist" else FASHION_MNIST_CLASSES
    found, reason = _real_or_why_not(data, lambda: _find_or_download_mnist(dataset, data_dir),
                                     lambda error: _mnist_instructions(dataset, error))
    if found is not None:
        arrays, source = found
        return ImageSplits(*arrays, class_names, dataset, source).subset(limit, seed)
    splits = standins.mnist_standin(seed)
    if dataset == "fashion_mnist":
        splits.name = "fashion_mnist"
        splits.source += " (no Fashion-MNIST sample ships offline: these are digits)"
    standins.announce_standin(dataset, splits.source, reason)
    return splits.subset(limit, seed)


def load_cifar10(
    data: str = "auto",
    data_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> ImageSplits:
    """CIFAR-10 as uint8 arrays ``(50000, 32, 32, 3)`` and ``(10000, 32, 32, 3)``.

    Parameters
    ----------
    data : {"auto", "real", "standin"}
    data_dir : path, optional
        A folder holding ``cifar-10-python.tar.gz``, ``cifar-10-batches-py/`` or an
        image folder ``train/<class>/*`` + ``test/<class>/*`` (see
        :mod:`common.datasets`); default ``$LAB_DATA_DIR`` when set.
    limit : int, optional
        As :func:`load_mnist`.
    seed : int

    Raises
    ------
    UserError
        As :func:`load_mnist`.
    """
    _check_choice("data", data, DATA_CHOICES)
    found, reason = _real_or_why_not(data, lambda: _find_or_download_cifar10(data_dir), _cifar10_instructions)
    if found is not None:
        return found.subset(limit, seed)
    splits = standins.make_cifar10_standin(seed=seed)
    standins.announce_standin("cifar10", splits.source, reason)
    return splits.subset(limit, seed)


def cifar10_batches(
    data: str = "auto", data_dir: str | os.PathLike | None = None, seed: int = 0, limit: int | None = None,
) -> CifarBatches:
    """A ``cifar-10-batches-py`` folder (5 training batches, 1 test batch, ``batches.meta``).

    For the archive, the lab's own way: download (or find) ``cifar-10-python.tar.gz``,
    check it, extract it. For an image folder or the stand-in, the pickled batches
    are written once, in the real format, into the cache, so code that reads the
    batches by hand (:func:`read_cifar10_batch`) runs unchanged on every source.

    With ``limit``, the files hold the same stratified subset that
    ``load_cifar10(..., limit=limit, seed=seed)`` returns (training images dealt
    into five files in order, the test share in ``test_batch``), written once into
    the cache as ``cifar-10-batches-py-limit<N>-seed<S>-<key>/``.
    """
    _check_choice("data", data, DATA_CHOICES)
    folder, _ = _data_dir(data_dir) if data != "standin" else (None, "")
    if limit is not None and folder is not None and folder.is_dir() and formats.is_image_folder(folder):
        # Straight from the decoded arrays: no need for a full batches folder first.
        limited = _limited_batches(cache.cifar10_from_image_folder(folder), limit, seed, cache.folder_key(folder))
        if limited is not None:
            return limited
    found, reason = _real_or_why_not(data, lambda: _find_or_download_cifar10_batches(data_dir),
                                     _cifar10_instructions)
    if found is not None:
        if limit is None:
            return found
        limited = _limited_batches(_cifar10_from_batches(found), limit, seed, cache.folder_key(found.path))
        return limited or found
    splits = standins.make_cifar10_standin(seed=seed)
    standins.announce_standin("cifar10", splits.source, reason)
    # Keyed by the generated pixels, so a changed generator never meets old batches.
    limited = None if limit is None else _limited_batches(splits, limit, seed, f"standin-{_fingerprint(splits)}")
    if limited is not None:
        return limited
    folder = cache.cache_dir() / f"{CIFAR10_FOLDER}-standin-seed{seed}-{_fingerprint(splits)}"
    if not folder.is_dir():
        formats.write_cifar10_batches(splits, folder)
        cache.record_write(folder, f"the CIFAR-10 stand-in (seed {seed}) as batch files")
    return CifarBatches(folder, splits.class_names, splits.source, True)


def _fingerprint(splits: ImageSplits) -> str:
    return hashlib.sha256(splits.x_train[:256].tobytes() + splits.x_test[:256].tobytes()).hexdigest()[:12]


def _limited_batches(full: ImageSplits, limit: int, seed: int, key: str) -> CifarBatches | None:
    """The stratified ``--limit`` subset of ``full``, as batch files of its own in the cache.

    ``None`` when the limit covers the whole training set (use the full files).
    """
    subset = full.subset(limit, seed)
    if subset is full:
        return None
    folder = cache.cache_dir() / f"{CIFAR10_FOLDER}-limit{limit}-seed{seed}-{key}"
    if not (folder / CIFAR10_TEST_BATCH).is_file():
        formats.write_cifar10_batches(subset, folder)
        cache.record_write(folder, f"the --limit {limit} subset (seed {seed}) of "
                           f"{'the CIFAR-10 stand-in' if full.is_standin else 'CIFAR-10'} as batch files")
    return CifarBatches(folder, full.class_names, f"{full.source}, --limit {limit} (seed {seed})",
                        full.is_standin, limit)


# --- Where --data-dir points ------------------------------------------------------------------


def _data_dir(data_dir) -> tuple[Path | None, str]:
    """``(folder, how it was given)``: ``data_dir``, else ``$LAB_DATA_DIR``, else ``(None, "")``."""
    if data_dir is not None:
        return Path(data_dir).expanduser(), f"--data-dir {Path(data_dir).expanduser()}"
    from_env = os.environ.get("LAB_DATA_DIR", "").strip()
    if from_env:
        folder = Path(from_env).expanduser()
        if not folder.exists():
            raise UserError(f"LAB_DATA_DIR={from_env} does not exist: set it to the folder that holds the "
                            "dataset files (see README: Data), or unset it to use the Keras cache")
        return folder, f"LAB_DATA_DIR={folder}"
    return None, ""


def _not_a_folder(flag: str, expected: str) -> UserError:
    return UserError(f"{flag} is a file, not a folder: --data-dir (or LAB_DATA_DIR) must be the folder in which "
                     f"to look for {expected}.")


def _candidates(folder: Path) -> list[Path]:
    """A data folder itself, then its ``datasets/`` (the layout ``python -m common.datasets fetch`` writes)."""
    return [folder, folder / "datasets"]


# --- MNIST ------------------------------------------------------------------------------------


def _mnist_expected(dataset: str) -> str:
    return (f"{MNIST_NPZ} or " if dataset == "mnist" else "") + ", ".join(IDX_FILES.values())


def _find_or_download_mnist(dataset: str, data_dir):
    folder, flag = _data_dir(data_dir)
    if folder is not None:
        if folder.is_file():
            if dataset == "mnist" and folder.name == MNIST_NPZ:
                with cache.advice_for(folder):
                    return formats.read_mnist_npz(folder), f"{MNIST_NPZ} ({folder})"
            raise _not_a_folder(flag, _mnist_expected(dataset) + " (the .gz files may also be un-gzipped)")
        places = _candidates(folder)
        if dataset == "fashion_mnist":
            places = [folder, folder / FASHION_MNIST_FOLDER, folder / "datasets" / FASHION_MNIST_FOLDER]
        for place in places:
            found = _mnist_from_folder(place, allow_npz=dataset == "mnist")
            if found is not None:
                return found
        raise UserError(f"{flag} holds no {dataset} files: expected {_mnist_expected(dataset)} "
                        "(the .gz files may also be un-gzipped)")
    cache_folder = cache.cache_dir()
    if dataset == "mnist":
        npz = cache_folder / MNIST_NPZ
        if not npz.is_file():
            downloads.fetch(sources.REMOTE_FILES["mnist"], npz)
            cache.record_write(npz, "the MNIST download")
        with cache.advice_for(npz, _good_copy("mnist")):
            return formats.read_mnist_npz(npz), f"{MNIST_NPZ} ({npz})"
    folder = cache_folder / FASHION_MNIST_FOLDER  # where keras.datasets.fashion_mnist caches it
    downloaded = []
    for key in sources.FASHION_MNIST_KEYS:
        remote = sources.REMOTE_FILES[key]
        if not (folder / remote.name).is_file():
            downloads.fetch(remote, folder / remote.name)
            cache.register(folder)  # at once: a run stopped after one file still owns the folder
            downloaded.append(remote.name)
    if downloaded:
        cache.record_write(folder, f"the Fashion-MNIST download ({len(downloaded)} IDX files)")
    found = _mnist_from_folder(folder, allow_npz=False)
    assert found is not None
    return found


def _mnist_from_folder(folder: Path, allow_npz: bool):
    if allow_npz and (folder / MNIST_NPZ).is_file():
        with cache.advice_for(folder / MNIST_NPZ, _good_copy("mnist")):
            return formats.read_mnist_npz(folder / MNIST_NPZ), f"{MNIST_NPZ} ({folder / MNIST_NPZ})"
    paths = {}
    for role, name in IDX_FILES.items():
        for candidate in (folder / name, folder / name.removesuffix(".gz")):
            if candidate.is_file():
                paths[role] = candidate
                break
    if not paths:
        return None
    missing = [IDX_FILES[role] for role in IDX_FILES if role not in paths]
    if missing:
        raise UserError(f"{folder} holds some MNIST IDX files but not {', '.join(missing)}: "
                        "all four are needed (train and test, images and labels)")
    arrays = []
    for role, dimensions in (("train_images", 3), ("train_labels", 1), ("test_images", 3), ("test_labels", 1)):
        with cache.advice_for(paths[role], f"a good copy of {IDX_FILES[role]}"):
            arrays.append(formats.read_idx(paths[role], dimensions))
    for images, labels, split in ((arrays[0], arrays[1], "train"), (arrays[2], arrays[3], "test")):
        if len(images) != len(labels):
            raise UserError(f"{folder}: the {split} IDX files disagree: {len(images)} images "
                            f"but {len(labels)} labels")
    return (arrays[0], arrays[1].astype(np.int64), arrays[2], arrays[3].astype(np.int64)), f"IDX files ({folder})"


def _good_copy(key: str) -> str:
    remote = sources.REMOTE_FILES[key]
    return f"a good copy of {remote.url} ({remote.checksum()})"


def _mnist_instructions(dataset: str, error: Exception) -> str:
    if dataset == "mnist":
        files = f"{MNIST_NPZ} ({sources.REMOTE_FILES['mnist'].url})"
    else:
        files = (", ".join(IDX_FILES.values()) + " (from "
                 f"{sources.REMOTE_FILES[sources.FASHION_MNIST_KEYS[0]].url.rsplit('/', 1)[0]}/)")
    return (f"{dataset} is not available: {error}.\n"
            f"Get {files} on a machine with a network, then either copy it into {cache.cache_dir()} "
            "(the Keras cache) or pass --data-dir FOLDER (python -m common.datasets fetch FOLDER gets every "
            "dataset at once). Use --data auto to run on the offline stand-in instead.")


# --- CIFAR-10 ---------------------------------------------------------------------------------


def _cifar10_expected() -> str:
    return (f"{CIFAR10_ARCHIVE}, an extracted {CIFAR10_FOLDER}/ (data_batch_1..5, test_batch), or an image "
            "folder train/<class>/* + test/<class>/*")


def _find_or_download_cifar10(data_dir) -> ImageSplits:
    folder, _ = _data_dir(data_dir)
    if folder is not None and formats.is_image_folder(folder):
        return cache.cifar10_from_image_folder(folder)
    return _cifar10_from_batches(_find_or_download_cifar10_batches(data_dir))


def _find_or_download_cifar10_batches(data_dir) -> CifarBatches:
    folder, flag = _data_dir(data_dir)
    if folder is not None:
        if folder.is_file():
            if folder.name.endswith(ARCHIVE_SUFFIXES):  # the archive itself is fine too
                return cache.extract_cifar10(folder)
            raise _not_a_folder(flag, _cifar10_expected())
        for place in _candidates(folder):
            for candidate in (place, place / CIFAR10_FOLDER):
                if (candidate / CIFAR10_TEST_BATCH).is_file():
                    return CifarBatches(candidate, formats.read_cifar10_class_names(candidate, sources.CIFAR10_CLASSES),
                                        f"pickled batches ({candidate})", False)
            if (place / CIFAR10_ARCHIVE).is_file():
                return cache.extract_cifar10(place / CIFAR10_ARCHIVE)
        if formats.is_image_folder(folder):
            splits = cache.cifar10_from_image_folder(folder)
            target = cache.cache_dir() / f"{CIFAR10_FOLDER}-from-images-{cache.folder_key(folder)}"
            if not target.is_dir():
                formats.write_cifar10_batches(splits, target)
                cache.record_write(target, f"the images of {folder} as batch files")
            return CifarBatches(target, splits.class_names, splits.source, False)
        raise UserError(f"{flag} holds no CIFAR-10: expected {_cifar10_expected()}")
    cache_folder = cache.cache_dir()
    # Ours and Keras 2's layout, then Keras 3's (cifar10.load_data() extracts into "-target").
    for candidate in (cache_folder / CIFAR10_FOLDER, cache_folder / f"{CIFAR10_FOLDER}-target" / CIFAR10_FOLDER):
        if (candidate / CIFAR10_TEST_BATCH).is_file():
            return CifarBatches(candidate, formats.read_cifar10_class_names(candidate, sources.CIFAR10_CLASSES),
                                f"pickled batches ({candidate})", False)
    for archive in (cache_folder / CIFAR10_ARCHIVE, cache_folder / f"{CIFAR10_FOLDER}-target_archive",
                    cache_folder / f"{CIFAR10_FOLDER}.tar.gz"):
        if archive.is_file():
            return cache.extract_cifar10(archive)
    archive = downloads.fetch(sources.REMOTE_FILES["cifar10"], cache_folder / CIFAR10_ARCHIVE)
    cache.record_write(archive, "the CIFAR-10 download")
    return cache.extract_cifar10(archive)


def _cifar10_from_batches(batches: CifarBatches) -> ImageSplits:
    parts = []
    for path in [*batches.train_files, *batches.test_files]:
        with cache.advice_for(path, f"a good copy of {path.name} (extract {CIFAR10_ARCHIVE} again)"):
            parts.append(formats.read_cifar10_batch(path))
    train, (test_rows, test_labels) = parts[:-1], parts[-1]
    return ImageSplits(
        formats.rows_to_images(np.concatenate([rows for rows, _ in train])),
        np.concatenate([labels for _, labels in train]),
        formats.rows_to_images(test_rows), test_labels, batches.class_names, "cifar10", batches.source,
        batches.is_standin,
    )


def _cifar10_instructions(error: Exception) -> str:
    remote = sources.REMOTE_FILES["cifar10"]
    return (f"CIFAR-10 is not available: {error}.\n"
            f"Get {remote.url} ({remote.checksum()}) on a machine with a network and either copy it into "
            f"{cache.cache_dir()} or pass --data-dir FOLDER (a folder holding {CIFAR10_ARCHIVE}, the extracted "
            f"{CIFAR10_FOLDER}/, or train/<class>/*.png + test/<class>/*.png; python -m common.datasets fetch "
            "FOLDER gets every dataset at once). Use --data auto to run on the offline stand-in instead.")


# --- Small helpers ----------------------------------------------------------------------------


def _real_or_why_not(data: str, find_real, instructions):
    """``(find_real(), None)``, or ``(None, why the stand-in is used)`` for ``data="auto"``.

    ``data="real"`` turns a failed download into a :class:`UserError` built by
    ``instructions(error)``; ``data="standin"`` never looks for the real data.
    """
    if data == "standin":
        return None, "--data standin"
    try:
        return find_real(), None
    except downloads.DownloadError as error:
        if data == "real":
            raise UserError(instructions(error)) from None
        return None, str(error)


def _check_choice(name: str, value: str, choices) -> None:
    if value not in choices:
        raise UserError(f"{name}={value!r} is not one of {', '.join(choices)}")


