"""The two things a loader hands back: arrays in memory, or a folder of CIFAR-10 batch files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.datasets.limits import limit_indices
from common.datasets.sources import CIFAR10_TEST_BATCH, CIFAR10_TRAIN_BATCHES


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
    limit : int or None, the ``--limit`` that made this subset
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
        """``limit`` training images, stratified and seeded, and a proportional test share.

        The rule of :mod:`common.datasets.limits`; original order is kept. ``None``
        (or a limit at least the training size) returns ``self``.

        Raises
        ------
        UserError
            ``limit`` would leave a class without a training or a test image.
        """
        chosen = limit_indices(self.y_train, self.y_test, limit, seed, name=self.name)
        if chosen is None:
            return self
        train_index, test_index = chosen
        return ImageSplits(
            self.x_train[train_index], self.y_train[train_index],
            self.x_test[test_index], self.y_test[test_index],
            self.class_names, self.name, self.source, self.is_standin, limit,
        )


@dataclass
class CifarBatches:
    """A folder in the real ``cifar-10-batches-py`` layout and where it came from.

    ``limit`` is the ``--limit`` whose stratified subset the files hold (None: all).
    """

    path: Path
    class_names: list[str]
    source: str
    is_standin: bool
    limit: int | None = None

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
            "limit": self.limit,
        }
