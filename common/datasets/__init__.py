"""Where every lab script gets its data: MNIST, Fashion-MNIST, CIFAR-10 and the assignment's Oregon Wildlife.

Each loader looks, in order, in

1. ``data_dir`` when given, else ``$LAB_DATA_DIR`` when set (the files as they are
   originally distributed, see below), and fails with a message listing what it
   expected if nothing fits;
2. the Keras cache (``$KERAS_HOME/datasets``, default ``~/.keras/datasets``),
   including what ``keras.datasets.*.load_data()`` left there;
3. the dataset's official download (or the classroom mirror ``LAB_DATA_MIRROR``),
   with a timeout, a progress bar and a checksum, written under a temporary name
   and renamed only once it checks out;
4. an offline stand-in, only with ``data="auto"`` (announced in a banner, and
   recorded as ``is_standin`` / ``source`` in :meth:`ImageSplits.describe`), or
   never with ``data="real"`` (a :class:`~common.errors.UserError` that says how to
   get the files). ``data="standin"`` goes straight to the stand-in.

Accepted ``data_dir`` contents (a folder; also its ``datasets/`` subfolder, the
layout ``python -m common.datasets fetch`` writes):

==============  ==========================================================
MNIST           ``mnist.npz`` (the Keras file), or the four IDX files
                ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
                ``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz``
                (also un-gzipped)
Fashion-MNIST   the same four IDX file names, or ``fashion-mnist/`` holding them
CIFAR-10        ``cifar-10-python.tar.gz``; or the extracted
                ``cifar-10-batches-py/`` (or its contents); or an image folder
                ``train/<class>/*.png|jpg`` + ``test/<class>/*``
==============  ==========================================================

Oregon Wildlife (the assignment's photos, from Kaggle, which needs a login) is a
folder of class folders, ``--data-dir`` or ``./oregon_wildlife``, else a generated
stand-in: :func:`find_wildlife` lists it, :func:`load_wildlife` checks and splits it.

``--limit N`` means the same everywhere (:mod:`common.datasets.limits`): N
training images, stratified, and a proportional share of the test set;
:func:`check_limit` refuses a limit that leaves a class out, before any loading.

One job per module:

* :mod:`~common.datasets.sources` -- file names, URLs, checksums, class names, split sizes
* :mod:`~common.datasets.downloads` -- download with progress, checksum, temporary name, mirror
* :mod:`~common.datasets.formats` -- IDX, ``mnist.npz``, CIFAR-10 pickles, image folders
* :mod:`~common.datasets.cache` -- the cache folder, extraction, decoded-folder cache, list and clean
* :mod:`~common.datasets.standins` -- the MNIST, CIFAR-10 and Oregon Wildlife stand-ins
* :mod:`~common.datasets.limits` -- the ``--limit`` rule
* :mod:`~common.datasets.splits` -- :class:`ImageSplits` and :class:`CifarBatches`
* :mod:`~common.datasets.loaders` -- :func:`load_mnist`, :func:`load_cifar10`, :func:`cifar10_batches`
* :mod:`~common.datasets.fetch` -- every download at once into one folder
* :mod:`~common.datasets.wildlife` -- Oregon Wildlife: find, decode-check, de-duplicate, split, CSV files

Set ``LAB_OFFLINE=1`` to make every network download fail at once (the tests do).
``python -m common.datasets --help`` lists, cleans and fetches.
"""

from common.datasets.cache import cache_dir, cache_entries, cifar10_png_folder, clean_cache, register
from common.datasets.downloads import DownloadError, download
from common.datasets.fetch import fetch_all
from common.datasets.formats import images_to_rows, read_cifar10_batch, rows_to_images, write_cifar10_batches
from common.datasets.limits import check_limit, limit_indices, smallest_limit, stratified_sample
from common.datasets.loaders import cifar10_batches, load_cifar10, load_mnist
from common.datasets.sources import (
    CIFAR10_ARCHIVE,
    CIFAR10_CLASSES,
    CIFAR10_FOLDER,
    CIFAR10_STANDIN_SIZES,
    CIFAR10_TEST_BATCH,
    CIFAR10_TRAIN_BATCHES,
    DATA_CHOICES,
    DOWNLOAD_TIMEOUT_SECONDS,
    FASHION_MNIST_CLASSES,
    IDX_FILES,
    IMAGE_SUFFIXES,
    MNIST_CLASSES,
    WILDLIFE_CLASSES,
)
from common.datasets.splits import CifarBatches, ImageSplits
from common.datasets.standins import STANDIN_CLASSES, make_cifar10_standin, wildlife_standin_folder
from common.datasets.wildlife import (
    WildlifeFolder,
    WildlifeSplit,
    find_wildlife,
    label_counts,
    link_split,
    load_wildlife,
    read_csv,
    write_csv,
)

__all__ = [
    "CIFAR10_ARCHIVE", "CIFAR10_CLASSES", "CIFAR10_FOLDER", "CIFAR10_STANDIN_SIZES", "CIFAR10_TEST_BATCH",
    "CIFAR10_TRAIN_BATCHES", "DATA_CHOICES", "DOWNLOAD_TIMEOUT_SECONDS", "FASHION_MNIST_CLASSES", "IDX_FILES",
    "IMAGE_SUFFIXES", "MNIST_CLASSES", "STANDIN_CLASSES", "WILDLIFE_CLASSES",
    "CifarBatches", "DownloadError", "ImageSplits", "WildlifeFolder", "WildlifeSplit",
    "cache_dir", "cache_entries", "check_limit", "cifar10_batches", "cifar10_png_folder", "clean_cache",
    "download", "fetch_all",
    "find_wildlife", "images_to_rows", "label_counts", "limit_indices", "link_split",
    "load_cifar10", "load_mnist", "load_wildlife", "make_cifar10_standin", "read_cifar10_batch", "read_csv",
    "register", "rows_to_images", "smallest_limit", "stratified_sample", "wildlife_standin_folder",
    "write_cifar10_batches", "write_csv",
]
