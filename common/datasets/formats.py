"""Reading and writing the files as they are distributed: IDX, ``mnist.npz``, CIFAR-10 pickles, image folders.

Every reader checks what it reads and raises a :class:`~common.errors.UserError`
that names the file and what was expected. What to do about a bad file depends on
whose it is (the cache's or the user's), so the callers add that advice.
"""

from __future__ import annotations

import gzip
import os
import pickle
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from common import console
from common.datasets.downloads import reason
from common.datasets.sources import CIFAR10_TEST_BATCH, CIFAR10_TRAIN_BATCHES, IMAGE_SUFFIXES
from common.errors import UserError
from common.files import atomic_folder

# --- MNIST ------------------------------------------------------------------------------------


def read_idx(path: Path, dimensions: int) -> np.ndarray:
    """An IDX file (the format MNIST is distributed in): big-endian header, then uint8 data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            payload = handle.read()
    except (OSError, EOFError) as error:
        raise UserError(f"{path} is truncated or not gzip ({reason(error)}).") from None
    magic = 0x800 + dimensions
    header_size = 4 + 4 * dimensions
    if len(payload) < header_size or int.from_bytes(payload[:4], "big") != magic:
        raise UserError(f"{path} is not an IDX file with {dimensions} dimension(s): expected magic number "
                        f"{magic} (0x{magic:08x}) in its first four bytes.")
    shape = tuple(int.from_bytes(payload[4 + 4 * i: 8 + 4 * i], "big") for i in range(dimensions))
    expected = int(np.prod(shape))
    if len(payload) - header_size != expected:
        raise UserError(f"{path} is truncated or padded: its header says {shape} = {expected} bytes of data, "
                        f"it holds {len(payload) - header_size}.")
    return np.frombuffer(payload, dtype=np.uint8, offset=header_size).reshape(shape)


def read_mnist_npz(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``x_train, y_train, x_test, y_test`` from the Keras ``mnist.npz`` (uint8 images, int64 labels)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = tuple(archive[key] for key in ("x_train", "y_train", "x_test", "y_test"))
    except (OSError, ValueError, KeyError, EOFError) as error:
        raise UserError(f"{path} is not a readable MNIST .npz ({reason(error)}): expected arrays "
                        "x_train, y_train, x_test, y_test.") from None
    x_train, y_train, x_test, y_test = arrays
    if x_train.ndim != 3 or len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise UserError(f"{path} holds arrays of shapes {[a.shape for a in arrays]}: expected "
                        "(N, 28, 28), (N,), (M, 28, 28), (M,).")
    return x_train.astype(np.uint8), y_train.astype(np.int64), x_test.astype(np.uint8), y_test.astype(np.int64)


# --- CIFAR-10 python batches ------------------------------------------------------------------


def read_cifar10_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """One pickled CIFAR-10 batch file, as the lab's ``read_file`` reads it.

    Returns
    -------
    rows : (N, 3072) uint8 ndarray
        Each row is one image, channel-major: 1024 red, then 1024 green, then
        1024 blue values, each plane row by row (see :func:`rows_to_images`).
    labels : (N,) int64 ndarray
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            batch = pickle.load(handle, encoding="bytes")
        rows = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except FileNotFoundError:
        raise UserError(f"CIFAR-10 batch file {path} is missing: expected {CIFAR10_TRAIN_BATCHES} "
                        f"and {CIFAR10_TEST_BATCH!r} in {path.parent}.") from None
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError) as error:
        raise UserError(f"{path} is not a CIFAR-10 python batch ({error}): expected a pickled dict with "
                        "b'data' (N x 3072 uint8) and b'labels'.") from None
    if rows.ndim != 2 or rows.shape[1] != 3072 or len(rows) != len(labels):
        raise UserError(f"{path} holds data of shape {rows.shape} and {len(labels)} labels: "
                        "expected N x 3072 pixels and N labels.")
    return rows, labels


def read_cifar10_class_names(folder: Path, default: list[str]) -> list[str]:
    """The names in ``folder/batches.meta``, or ``default`` when it is missing or damaged."""
    meta = folder / "batches.meta"
    if meta.is_file():
        try:
            with open(meta, "rb") as handle:
                names = pickle.load(handle, encoding="bytes")[b"label_names"]
            return [name.decode() if isinstance(name, bytes) else str(name) for name in names]
        except Exception:  # a damaged meta file only costs the names, which are fixed anyway
            pass
    return list(default)


def rows_to_images(rows: np.ndarray) -> np.ndarray:
    """CIFAR-10 rows ``(N, 3072)`` (channel-major) to images ``(N, 32, 32, 3)``."""
    return np.ascontiguousarray(np.asarray(rows, dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def images_to_rows(images: np.ndarray) -> np.ndarray:
    """Images ``(N, 32, 32, 3)`` to CIFAR-10 rows ``(N, 3072)``; inverse of :func:`rows_to_images`."""
    return np.ascontiguousarray(np.asarray(images, dtype=np.uint8).transpose(0, 3, 1, 2).reshape(len(images), -1))


def write_cifar10_batches(splits, folder: Path) -> Path:
    """Write ``splits`` (an :class:`ImageSplits`) as pickled batches in the real ``cifar-10-batches-py`` layout.

    The training images are dealt into five batches in order (the real ones hold
    10,000 each); labels are Python lists as in the originals. The folder appears
    complete or not at all.
    """
    with atomic_folder(folder) as staging:
        for index, part in enumerate(np.array_split(np.arange(len(splits.x_train)), 5), start=1):
            _write_batch(staging / f"data_batch_{index}", splits.x_train[part], splits.y_train[part],
                         f"training batch {index} of 5")
        _write_batch(staging / CIFAR10_TEST_BATCH, splits.x_test, splits.y_test, "testing batch 1 of 1")
        with open(staging / "batches.meta", "wb") as handle:
            pickle.dump({b"label_names": [name.encode() for name in splits.class_names],
                         b"num_cases_per_batch": int(np.ceil(len(splits.x_train) / 5)), b"num_vis": 3072}, handle)
    return folder


def _write_batch(path: Path, images: np.ndarray, labels: np.ndarray, batch_label: str) -> None:
    batch = {
        b"batch_label": batch_label.encode(),
        b"labels": [int(label) for label in labels],
        b"data": images_to_rows(images),
        b"filenames": [f"image_{index:05d}.png".encode() for index in range(len(images))],
    }
    with open(path, "wb") as handle:
        pickle.dump(batch, handle, protocol=pickle.HIGHEST_PROTOCOL)


# --- Image folders ----------------------------------------------------------------------------


def is_image_folder(folder: Path) -> bool:
    """True for a folder with ``train/`` and ``test/`` subfolders (one folder per class in each)."""
    return (folder / "train").is_dir() and (folder / "test").is_dir()


def list_image_folder(folder: Path) -> tuple[list[str], dict[str, tuple[list[Path], list[int]]]]:
    """Class names and, per split, the image files and their labels of ``train/<class>/*`` + ``test/<class>/*``."""
    def classes(split: str) -> list[str]:
        return sorted(path.name for path in (folder / split).iterdir()
                      if path.is_dir() and not path.name.startswith("."))

    class_names, test_classes = classes("train"), classes("test")
    if not class_names or class_names != test_classes:
        raise UserError(f"{folder}: train/ and test/ must hold the same class folders; found "
                        f"train {class_names} and test {test_classes}")
    splits = {}
    for split in ("train", "test"):
        paths, labels = [], []
        for label, name in enumerate(class_names):
            files = sorted(path for path in (folder / split / name).iterdir()
                           if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith("."))
            paths += files
            labels += [label] * len(files)
        if not paths:
            raise UserError(f"{folder / split} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        splits[split] = (paths, labels)
    return class_names, splits


def decode_images(paths: list[Path], description: str, shape=(32, 32, 3)) -> np.ndarray:
    """Decode image files to one uint8 array ``(N, *shape)``, with a progress bar, on every core.

    Raises a :class:`UserError` naming the first file that is unreadable or of another size.
    """
    from PIL import Image, UnidentifiedImageError

    def decode(path: Path) -> np.ndarray:
        try:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB"))
        except (UnidentifiedImageError, OSError) as error:
            raise UserError(f"{path} is not a readable image ({reason(error)}): replace it with a good copy, "
                            "or move it out of the folder") from None
        if pixels.shape != tuple(shape):
            raise UserError(f"{path} is {pixels.shape[1]}x{pixels.shape[0]}: CIFAR-10 images are "
                            f"{shape[1]}x{shape[0]}")
        return pixels

    # Pillow releases the GIL while decoding, so threads use every core.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        images = list(console.progress(pool.map(decode, paths, chunksize=256), total=len(paths),
                                       desc=description, unit="img"))
    return np.stack(images)
