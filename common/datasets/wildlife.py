"""Oregon Wildlife for the assignment: find the photos, check them, split them, write the CSV files.

What the assignment needs before its lesson (the input pipelines) begins:

1. :func:`find_wildlife` finds the class folders (``--data-dir``, ``./oregon_wildlife``,
   or the generated stand-in) and lists the files without opening any, so that
   :func:`~common.datasets.check_limit` can refuse a too-small ``--limit`` at once;
2. :func:`load_wildlife` decode-checks every file with :func:`tfrecord_tools.scan_images`
   (formats sniffed from content, not guessed from the extension), drops exact
   duplicates (:func:`drop_duplicates`), splits 80/20, stratified (:func:`split`), and
   takes the ``--limit`` subset by the package's rule (:mod:`common.datasets.limits`);
3. :func:`write_csv` writes the lab's ``train.csv`` / ``test.csv`` (``img_path,label``);
   :func:`link_split` lays the split out as ``train/<class>/`` and ``test/<class>/``
   links, which ``python -m tfrecord_tools write`` takes as it is.

Example::

    photos = datasets.find_wildlife("auto", None)
    datasets.check_limit(photos.name, 200, global_batch=32,
                         train_counts=photos.train_counts, test_counts=photos.test_counts)
    data = datasets.load_wildlife(photos, limit=200)
    datasets.write_csv("train.csv", data.train_paths, data.train_labels)
"""

from __future__ import annotations

import collections
import csv
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.console import banner, interactive
from common.datasets.limits import check_limit, limit_indices
from common.datasets.sources import WILDLIFE_TEST_SHARE, WILDLIFE_URL
from common.datasets.standins import wildlife_standin_folder
from common.errors import UserError
from common.files import atomic_path


@dataclass
class WildlifeFolder:
    """The class folders found, and how many files each half will hold (listed, not yet opened).

    For a folder of class folders, ``test_counts`` is each class's 20% share,
    rounded; the decode check can only lower the counts.
    """

    root: Path
    is_standin: bool
    standin_reason: str
    layout: str  # "classes" (<class>/...) or "splits" (train/<class>/..., test/<class>/...)
    class_names: list[str]
    train_counts: list[int]
    test_counts: list[int]

    @property
    def name(self) -> str:
        """How messages name these photos."""
        return "the Oregon Wildlife stand-in" if self.is_standin else f"the photos in {self.root}"


@dataclass
class WildlifeSplit:
    """The usable photos, split 80/20, and what was dropped on the way.

    ``train_paths`` / ``test_paths`` are absolute paths; ``*_labels`` index
    ``class_names`` (sorted folder names, as in the lab).
    """

    root: Path
    is_standin: bool
    standin_reason: str
    layout: str
    class_names: list[str]
    train_paths: list[str]
    train_labels: list[int]
    test_paths: list[str]
    test_labels: list[int]
    relative_paths: dict[str, str] = field(repr=False)  # absolute path -> path below the data root
    rejected: list[dict] = field(default_factory=list)
    duplicates: list[dict] = field(default_factory=list)
    limit: int | None = None

    def describe(self) -> dict:
        """What the metrics file says about the data."""
        names = self.class_names
        return {
            "name": "oregon_wildlife_standin" if self.is_standin else "oregon_wildlife",
            "is_standin": self.is_standin,
            **({"standin_reason": self.standin_reason} if self.is_standin else {}),
            "source": str(self.root),
            "layout": self.layout,
            "class_names": names,
            "train_images": len(self.train_paths),
            "test_images": len(self.test_paths),
            "train_class_counts": dict(collections.Counter(names[label] for label in self.train_labels)),
            "test_class_counts": dict(collections.Counter(names[label] for label in self.test_labels)),
            "rejected": self.rejected,
            "duplicates_dropped": len(self.duplicates),
            "duplicates": self.duplicates,
            "limit": self.limit,
        }


# ---------------------------------------------------------------------------
# Finding and checking the photos


def find_wildlife(data: str, data_dir: Path | None, *, seed: int = 0, limit: int | None = None,
                  global_batch: int | None = None) -> WildlifeFolder:
    """Find the class folders and list their files, opening none (the stand-in is generated once).

    With ``limit``, it is checked against the listed classes as ``--limit`` is for the
    other datasets (:func:`~common.datasets.check_limit`), before any photo is decoded.

    Parameters
    ----------
    data : {"auto", "real", "standin"}
        The ``--data`` flag: ``auto`` takes ``data_dir`` or ``./oregon_wildlife`` and
        falls back to the stand-in; ``real`` refuses to.
    data_dir : Path or None
        Folder of class folders (``<class>/*.jpg``), or of ``train/`` and ``test/``
        folders of class folders (kept as they are); a folder holding the unzipped
        ``oregon_wildlife/`` works too.
    seed : int
        The stand-in's seed.
    limit, global_batch : int, optional
        The ``--limit`` flag and the images of one training step.

    Raises
    ------
    UserError
        ``data_dir`` is a file or holds no class folders; ``data="real"`` and no photos;
        ``limit`` too small for these classes.
    """
    from tfrecord_tools import TFRecordToolsError
    from tfrecord_tools.scan import find_files

    root, is_standin, why = _find_root(data, data_dir, seed)
    try:
        layout, class_names, candidates, _ = find_files(root)
    except TFRecordToolsError as error:
        raise UserError(f"cannot use --data-dir {root}: {error}") from None
    listed = collections.Counter((class_name, split) for _, _, class_name, split in candidates)
    if layout == "splits":
        train_counts = [listed[name, "train"] for name in class_names]
        test_counts = [listed[name, "test"] for name in class_names]
    else:
        test_counts = [round(listed[name, None] * WILDLIFE_TEST_SHARE) for name in class_names]
        train_counts = [listed[name, None] - test for name, test in zip(class_names, test_counts, strict=True)]
    found = WildlifeFolder(root, is_standin, why, layout, class_names, train_counts, test_counts)
    check_limit(found.name, limit, global_batch=global_batch, train_counts=train_counts, test_counts=test_counts)
    return found


# What the lab printed for its 10-class copy, after dropping .gif and .bmp files by name.
LAB_IMAGE_COUNT = 7168


def load_wildlife(photos: WildlifeFolder, *, limit: int | None = None, seed: int = 0,
                  workers: int = 1) -> WildlifeSplit:
    """Decode-check, de-duplicate and split the photos, then take the ``--limit`` subset, printing what the lab prints.

    Parameters
    ----------
    photos : WildlifeFolder
        From :func:`find_wildlife`.
    limit : int, optional
        ``--limit``: ``limit`` training photos, stratified, and a proportional share
        of the test photos (:func:`~common.datasets.limit_indices`).
    seed : int
    workers : int, optional
        Processes for the decode check. The default, 1, works from any script:
        worker processes need the caller's code under an ``if __name__ ==
        "__main__":`` block, which a lab script (read top to bottom) does not have.

    Raises
    ------
    UserError
        No usable photo; a class with fewer than 2; a split folder without a half;
        a ``limit`` that leaves a class out once the bad files are dropped.
    """
    import tfrecord_tools

    root = photos.root
    if photos.is_standin:
        banner(f"OFFLINE STAND-IN for Oregon Wildlife, not the real photos\nwhy: {photos.standin_reason}\n"
               f"data: {root} (generated shapes; 2 broken files on purpose)\n"
               "Accuracies and timings are not the lab's. Use --data-dir oregon_wildlife for the real data.")
    print(f"data root: {root}")
    try:
        scan = tfrecord_tools.scan_images(root, workers=workers, progress=interactive())
    except tfrecord_tools.TFRecordToolsError as error:
        raise UserError(f"cannot use --data-dir {root}: {error}") from None
    print("classes:")
    for class_name, count in scan.class_counts().items():
        print(f"  {class_name:<20} {count:>5} images")
    usable, rejected = _decodable(scan)
    lab_count = "" if photos.is_standin else f"; the lab's filtered copy gave {LAB_IMAGE_COUNT}"
    print(f"\ntotal img num: {len(usable)} ({len(rejected)} dropped: not images, or not decodable{lab_count})")
    for item in rejected[:10]:
        print(f"  dropped {item['path']}: {item['reason']}")
    if len(rejected) > 10:
        print(f"  ... and {len(rejected) - 10} more (all listed in metrics.json)")
    if not usable:
        raise UserError(f"no usable image under {root}: expected <class>/<image> files")
    print({name: index for index, name in enumerate(scan.class_names)})
    unique, duplicates = drop_duplicates(usable)
    print(f"exact duplicates dropped: {len(duplicates)} (same SHA-256 as an earlier file; kept the first by path)")
    for item in duplicates[:5]:
        print(f"  dropped {item['path']}: same bytes as {item['same_as']}")
    train, test = split(unique, scan.layout, scan.class_names, root)
    chosen = limit_indices([image.label for image in train], [image.label for image in test], limit, seed,
                           name=photos.name)
    if chosen is not None:
        train, test = [train[index] for index in chosen[0]], [test[index] for index in chosen[1]]
    print(f"training data: {len(train)}")
    print(f"testing data: {len(test)}")
    return WildlifeSplit(
        root=root, is_standin=photos.is_standin, standin_reason=photos.standin_reason, layout=scan.layout,
        class_names=scan.class_names,
        train_paths=[image.path for image in train], train_labels=[image.label for image in train],
        test_paths=[image.path for image in test], test_labels=[image.label for image in test],
        relative_paths={image.path: image.relative_path for image in unique},
        rejected=rejected, duplicates=duplicates, limit=limit)


def _find_root(data, data_dir, seed):
    """``(folder, is_standin, why)``: where the class folders are."""
    if data_dir is not None and data_dir.exists() and not data_dir.is_dir():
        raise UserError(f"--data-dir {data_dir} is a file; expected the folder that holds one folder of "
                        "images per class (the unzipped oregon_wildlife/)")
    if data != "standin":
        candidate = data_dir if data_dir is not None else Path("oregon_wildlife")
        if candidate.is_dir():
            nested = candidate / "oregon_wildlife"  # the folder that holds the unzipped oregon_wildlife/
            return (nested if nested.is_dir() else candidate), False, ""
        if data == "real":
            raise UserError(f"--data real needs the Oregon Wildlife photos ({WILDLIFE_URL}): unzip them so that "
                            "oregon_wildlife/<class>/*.jpg exist, and pass --data-dir oregon_wildlife "
                            "(any folder of class folders of images works)")
    why = "--data standin" if data == "standin" else "no --data-dir and no ./oregon_wildlife folder"
    return wildlife_standin_folder(seed), True, why


def _decodable(scan):
    """The scan's good images that TensorFlow decodes too, and every rejected file with its reason."""
    rejected = [{"path": item.relative_path, "reason": item.reason} for item in scan.rejected]
    unusual = [image for image in scan.images if image.reencode]  # CMYK, TIFF, ...: check with TensorFlow
    undecodable = set()
    if unusual:
        import tensorflow as tf

        for image in unusual:
            try:
                tf.io.decode_image(tf.io.read_file(image.path), channels=3, expand_animations=False)
            except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError):
                undecodable.add(image.path)
                rejected.append({"path": image.relative_path,
                                 "reason": f"{image.source_format} ({image.mode}) that TensorFlow cannot decode"})
    return [image for image in scan.images if image.path not in undecodable], rejected


def drop_duplicates(images):
    """Keep the first image (by path) of each SHA-256; returns ``(kept, dropped)``.

    A photo that sits in two folders could otherwise land in both halves of the
    split, and the test would score images seen in training.
    """
    first_with_hash, duplicates = {}, []
    for image in sorted(images, key=lambda image: image.path):
        if image.sha256 in first_with_hash:
            duplicates.append({"path": image.relative_path, "same_as": first_with_hash[image.sha256].relative_path})
        else:
            first_with_hash[image.sha256] = image
    return sorted(first_with_hash.values(), key=lambda image: image.path), duplicates


def split(images, layout, class_names, root):
    """The lab's 80/20 split, made reproducible: ``(train, test)`` lists of images.

    The lab shuffles the paths with ``random_state=1`` and splits with
    ``random_state=0``; here the paths are sorted first (a folder listing's order
    differs between machines) and the split is stratified, so every class keeps its
    share in both halves. A folder that is already split keeps its split.
    """
    from sklearn.model_selection import train_test_split
    from sklearn.utils import shuffle

    if layout == "splits":
        given = collections.Counter(image.split for image in images)
        if not given["train"] or not given["test"]:
            missing = "train" if not given["train"] else "test"
            raise UserError(f"{root} is already split into {sorted(given)} folders, but has no usable images in "
                            f"{missing}/: expected train/<class>/<image> and test/<class>/<image> (or one folder "
                            "per class, to split 80/20 here)")
        left_out = f"; {given['validation']} images in validation/ are left out" if given["validation"] else ""
        print(f"{root} is already split: using its train/ and test/ folders as they are{left_out}")
        train = shuffle([image for image in images if image.split == "train"], random_state=1)
        return train, [image for image in images if image.split == "test"]
    images = shuffle(list(images), random_state=1)
    labels = [image.label for image in images]
    print("First 10 label indices: ", labels[:10])
    too_small = [class_names[label] for label, count in collections.Counter(labels).items() if count < 2]
    if too_small:
        raise UserError(f"classes {too_small} in {root} have fewer than 2 usable images; add images or remove "
                        "those folders")
    train, test = train_test_split(images, test_size=WILDLIFE_TEST_SHARE, random_state=0, stratify=labels)
    return list(train), list(test)


# ---------------------------------------------------------------------------
# Files for the pipelines, and the checks on what they yield


def write_csv(path: str | os.PathLike, paths: list[str], labels: list[int]) -> Path:
    """The lab's CSV: a header ``img_path,label``, then one row per photo (atomically)."""
    with atomic_path(path) as temporary, open(temporary, "w", newline="") as csv_file:
        writer = csv.writer(csv_file)
        writer.writerow(["img_path", "label"])
        writer.writerows(zip(paths, labels, strict=True))
    return Path(path)


def read_csv(path: str | os.PathLike) -> list[tuple[str, int]]:
    """One CSV file -> its ``(img_path, label)`` rows."""
    with open(path, newline="") as csv_file:
        return [(row["img_path"], int(row["label"])) for row in csv.DictReader(csv_file)]


def link_split(data: WildlifeSplit, folder: str | os.PathLike) -> Path:
    """Lay the split out as ``folder/train/<class>/...`` and ``folder/test/<class>/...`` (symbolic links).

    ``tfrecord_tools write`` keeps a folder that is already split as it is, so the
    records hold exactly the photos of train.csv and test.csv. Each link keeps the
    photo's path below its class folder (``deer/extra/x.jpg`` stays a deer).
    """
    folder = Path(folder)
    shutil.rmtree(folder, ignore_errors=True)
    for split_name, paths in (("train", data.train_paths), ("test", data.test_paths)):
        for path in paths:
            parts = Path(data.relative_paths[path]).parts  # [<split>/]<class>/.../<name>
            if data.layout == "splits":
                parts = parts[1:]
            link = folder / split_name / Path(*parts)
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(Path(path).resolve(), link)
    return folder


def label_counts(*datasets) -> list[dict[int, int]]:
    """``{label: count}`` of one pass over each dataset of ``(images, labels, ...)`` batches."""
    counts = []
    for dataset in datasets:
        counter = collections.Counter()
        for element in dataset:
            counter.update(int(label) for label in np.asarray(element[1]).reshape(-1))
        counts.append(dict(sorted(counter.items())))
    return counts
