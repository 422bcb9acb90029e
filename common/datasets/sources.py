"""Where each dataset file comes from: file names, URLs, checksums, class names and split sizes.

Nothing here does any work; the other modules read these tables when they run,
so a test (or a teacher with a local copy) can point them elsewhere by changing
one entry of :data:`REMOTE_FILES`.
"""

from __future__ import annotations

from dataclasses import dataclass

DATA_CHOICES = ("auto", "real", "standin")
DOWNLOAD_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class RemoteFile:
    """One file to download.

    Attributes
    ----------
    path : str
        Where it goes, relative to a Keras home (``$KERAS_HOME``, ``~/.keras``) or
        to a folder made by ``python -m common.datasets fetch``: for example
        ``datasets/mnist.npz``. A mirror (``LAB_DATA_MIRROR``) serves the same paths.
    url : str
        The official download.
    md5, sha256 : str or None
        The published checksum (one of them).
    """

    path: str
    url: str
    md5: str | None = None
    sha256: str | None = None

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    def checksum(self) -> str:
        """For people: ``"MD5 c58f..."`` or ``"SHA-256 731c..."``."""
        return f"MD5 {self.md5}" if self.md5 else f"SHA-256 {self.sha256}"


# --- MNIST and Fashion-MNIST --------------------------------------------------------------

MNIST_NPZ = "mnist.npz"
IDX_FILES = {  # role -> file name, in the original distribution
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
FASHION_MNIST_FOLDER = "fashion-mnist"  # where keras.datasets.fashion_mnist caches its files
MNIST_CLASSES = [str(digit) for digit in range(10)]
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]

# --- CIFAR-10 -------------------------------------------------------------------------------

CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN_BATCHES = [f"data_batch_{index}" for index in range(1, 6)]
CIFAR10_TEST_BATCH = "test_batch"
CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]
CIFAR10_STANDIN_SIZES = (10_000, 2_000)  # train, test
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}

# --- The downloads ----------------------------------------------------------------------------
# Checksums as published by the dataset authors and by Keras (keras/src/datasets/*.py,
# keras/src/applications/*.py, Keras 3.15).

_KERAS_DATASETS = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
_KERAS_APPLICATIONS = "https://storage.googleapis.com/tensorflow/keras-applications/"

REMOTE_FILES: dict[str, RemoteFile] = {
    "mnist": RemoteFile(f"datasets/{MNIST_NPZ}", _KERAS_DATASETS + MNIST_NPZ,
                        sha256="731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"),
    **{
        f"fashion_mnist/{name}": RemoteFile(f"datasets/{FASHION_MNIST_FOLDER}/{name}", _KERAS_DATASETS + name, md5=md5)
        for name, md5 in (
            ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
            ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
            ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
            ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
        )
    },
    "cifar10": RemoteFile(f"datasets/{CIFAR10_ARCHIVE}", "https://www.cs.toronto.edu/~kriz/" + CIFAR10_ARCHIVE,
                          md5="c58f30108f718f92721af3b95e74349a"),
    # ImageNet weights of the assignment's backbones, include_top=False, as
    # keras.applications.VGG16 / MobileNetV3Small look for them in $KERAS_HOME/models.
    "vgg16": RemoteFile("models/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                        _KERAS_APPLICATIONS + "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                        md5="6d6bbae143d832006294945121d1f1fc"),
    "mobilenet_v3_small": RemoteFile(
        "models/weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
        _KERAS_APPLICATIONS + "mobilenet_v3/weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
        md5="d3e8ec802a04aa4fc771ee12a9a9b836"),
}
FASHION_MNIST_KEYS = [f"fashion_mnist/{name}" for name in IDX_FILES.values()]
DATASET_KEYS = ["mnist", *FASHION_MNIST_KEYS, "cifar10"]
WEIGHT_KEYS = ["vgg16", "mobilenet_v3_small"]

# --- Split sizes, for the --limit rule before anything is loaded -----------------------------
# Images per class in the real training and test sets: MNIST's published per-digit
# counts (they sum to 60,000 and 10,000); Fashion-MNIST and CIFAR-10 are balanced.
CLASS_COUNTS = {
    "mnist": ([5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
              [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]),
    "fashion_mnist": ([6000] * 10, [1000] * 10),
    "cifar10": ([5000] * 10, [1000] * 10),
}

# --- Oregon Wildlife (the assignment's photos; no download: Kaggle needs a login) ---------------

WILDLIFE_URL = "https://www.kaggle.com/datasets/virtualdvid/oregon-wildlife"
#: The real dataset's folder names, used for the stand-in too.
WILDLIFE_CLASSES = ["bald_eagle", "black_bear", "cougar", "deer", "nutria", "raccoon", "raven", "red_fox",
                    "sea_lions", "virginia_opossum"]
WILDLIFE_TEST_SHARE = 0.2  # the lab's 80/20 split
