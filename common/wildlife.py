"""Oregon Wildlife for the assignment: find the photos, check them, split them, write the CSV files.

What the assignment needs before its lesson (the input pipelines) begins:

* :func:`load` finds the class folders (``--data-dir``, ``./oregon_wildlife``, or a
  generated stand-in), decode-checks every file with :func:`tfrecord_tools.scan_images`
  (formats sniffed from content, not guessed from the extension), drops exact
  duplicates, splits 80/20 (stratified) and applies ``--limit``;
* :func:`write_csv` writes the lab's ``train.csv`` / ``test.csv`` (``img_path,label``);
* :func:`link_split` lays the split out as ``train/<class>/`` and ``test/<class>/``
  links, which ``python -m tfrecord_tools write`` takes as it is;
* :func:`make_standin` draws the offline stand-in: 10 classes of photo-sized JPEGs.

Example::

    data = wildlife.load("auto", None, limit=200, seed=0)
    wildlife.write_csv("train.csv", data.train_paths, data.train_labels)
"""

from __future__ import annotations

import collections
import csv
import hashlib
import math
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common import datasets
from common.errors import UserError

#: The real dataset's folder names, used for the stand-in too.
CLASS_NAMES = ["bald_eagle", "black_bear", "cougar", "deer", "nutria", "raccoon", "raven", "red_fox",
               "sea_lions", "virginia_opossum"]
STANDIN_IMAGES_PER_CLASS = 100  # 1,000 generated photos: a run with no flags takes minutes
TEST_SHARE = 0.2  # the lab's 80/20 split
KAGGLE_URL = "https://www.kaggle.com/datasets/virtualdvid/oregon-wildlife"


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


def load(data: str, data_dir: Path | None, *, limit: int | None = None, seed: int = 0,
         workers: int | None = None) -> WildlifeSplit:
    """Find, check, de-duplicate and split the photos, printing what the lab prints.

    Parameters
    ----------
    data : {"auto", "real", "standin"}
        The ``--data`` flag: ``auto`` takes ``data_dir`` or ``./oregon_wildlife`` and
        falls back to the stand-in; ``real`` refuses to.
    data_dir : Path or None
        Folder of class folders (``<class>/*.jpg``), or of ``train/`` and ``test/``
        folders of class folders (kept as they are); a folder holding the unzipped
        ``oregon_wildlife/`` works too.
    limit : int, optional
        A seeded, stratified share of ``limit`` training photos (and the test share
        in proportion).
    seed : int
    workers : int, optional
        Processes for the decode check (default: all cores).
    """
    import tfrecord_tools

    from common import report

    root, is_standin, why = _find_root(data, data_dir, limit, seed)
    if is_standin:
        report.banner(f"OFFLINE STAND-IN for Oregon Wildlife, not the real photos\nwhy: {why}\n"
                      f"data: {root} (generated shapes; 2 broken files on purpose)\n"
                      "Accuracies and timings are not the lab's. Use --data-dir oregon_wildlife for the real data.")
    print(f"data root: {root}")
    try:
        scan = tfrecord_tools.scan_images(root, workers=workers, progress=report.interactive())
    except tfrecord_tools.TFRecordToolsError as error:
        raise UserError(f"cannot use --data-dir {root}: {error}") from None
    print("classes:")
    for class_name, count in scan.class_counts().items():
        print(f"  {class_name:<20} {count:>5} images")
    usable, rejected = _decodable(scan)
    print(f"\ntotal img num: {len(usable)} ({len(rejected)} dropped: not images, or not decodable)")
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
    if limit is not None and limit < len(train):
        train, test = _limit(train, test, limit, seed, len(scan.class_names))
    print(f"training data: {len(train)}")
    print(f"testing data: {len(test)}")
    return WildlifeSplit(
        root=root, is_standin=is_standin, standin_reason=why, layout=scan.layout, class_names=scan.class_names,
        train_paths=[image.path for image in train], train_labels=[image.label for image in train],
        test_paths=[image.path for image in test], test_labels=[image.label for image in test],
        relative_paths={image.path: image.relative_path for image in unique},
        rejected=rejected, duplicates=duplicates, limit=limit)


def _find_root(data, data_dir, limit, seed):
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
            raise UserError(f"--data real needs the Oregon Wildlife photos ({KAGGLE_URL}): unzip them so that "
                            "oregon_wildlife/<class>/*.jpg exist, and pass --data-dir oregon_wildlife "
                            "(any folder of class folders of images works)")
    why = "--data standin" if data == "standin" else "no --data-dir and no ./oregon_wildlife folder"
    per_class = STANDIN_IMAGES_PER_CLASS
    if limit is not None:  # generate only what a --limit run uses (and its test share)
        per_class = min(per_class, max(8, math.ceil(limit / (1 - TEST_SHARE) / len(CLASS_NAMES)) + 2))
    return standin_folder(per_class, seed), True, why


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
    train, test = train_test_split(images, test_size=TEST_SHARE, random_state=0, stratify=labels)
    return list(train), list(test)


def _limit(train, test, limit, seed, classes):
    """``--limit``: a seeded, stratified share of each half (the test half in proportion)."""
    test_size = max(classes, round(limit * len(test) / len(train)))
    keep_train = datasets.stratified_sample(np.array([image.label for image in train]), limit, seed)
    keep_test = datasets.stratified_sample(np.array([image.label for image in test]),
                                           min(test_size, len(test)), seed)
    return [train[index] for index in keep_train], [test[index] for index in keep_test]


# ---------------------------------------------------------------------------
# Files for the pipelines


def write_csv(path: str | os.PathLike, paths: list[str], labels: list[int]) -> Path:
    """The lab's CSV: a header ``img_path,label``, then one row per photo (atomically)."""
    from common import report

    with report.atomic_path(path) as temporary, open(temporary, "w", newline="") as csv_file:
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


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def with_timeline_tags(dataset, recorder):
    """Give ``(image, label)`` elements a timeline tag ``(source, epoch, index)``, as the timed sources do.

    ``flat_map`` over ``range(1)`` runs its function once per pass, so the pass
    counter is read afresh every epoch.
    """
    import tensorflow as tf

    source = recorder.new_source()

    def next_pass():
        return np.int64(recorder.next_pass(source))

    def one_pass(_):
        data_pass = tf.numpy_function(next_pass, [], tf.int64, stateful=True)
        return dataset.enumerate().map(
            lambda index, element: (*element, tf.stack([tf.constant(source, tf.int64), data_pass, index])))

    return tf.data.Dataset.range(1).flat_map(one_pass)


def label_counts(*datasets_) -> list[dict[int, int]]:
    """``{label: count}`` of one pass over each dataset of ``(images, labels, ...)`` batches."""
    counts = []
    for dataset in datasets_:
        counter = collections.Counter()
        for element in dataset:
            counter.update(int(label) for label in np.asarray(element[1]).reshape(-1))
        counts.append(dict(sorted(counter.items())))
    return counts


# ---------------------------------------------------------------------------
# The lab's model


def build_model(backbone: str, weights: str, head: str, classes: int, crop_size: int):
    """The lab's classifier: a backbone under its dense head, softmax output; input (crop, crop, 3) in [0, 1].

    Parameters
    ----------
    backbone : {"small_cnn", "mobilenet_v3_small", "vgg16"}
        ``vgg16`` is the lab's (ImageNet weights, frozen); ``small_cnn`` a light
        4-convolution CNN from scratch, for CPUs.
    weights : {"imagenet", "none"}
    head : {"flatten", "gap"}
        ``flatten`` is the lab's Flatten + Dense 4096/1024; ``gap`` puts
        GlobalAveragePooling before the same Dense layers.
    classes, crop_size : int
    """
    import keras

    class CaffePreprocess(keras.layers.Layer):
        """VGG16's ImageNet input: [0, 1] RGB -> 0-255 BGR minus the ImageNet mean pixel."""

        def call(self, images):
            bgr = keras.ops.flip(images, axis=-1) * 255.0
            return bgr - keras.ops.convert_to_tensor([103.939, 116.779, 123.68], dtype=images.dtype)

    def small_cnn(inputs):
        x = keras.layers.Conv2D(16, 5, strides=2, padding="same", activation="relu")(inputs)
        for filters in (32, 64, 128):
            x = keras.layers.MaxPooling2D(2)(x)
            # Keras' default momentum 0.99 needs hundreds of steps before the test-time statistics fit.
            x = keras.layers.BatchNormalization(momentum=0.9)(x)
            x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        return keras.layers.MaxPooling2D(2)(x)

    inputs = keras.Input((crop_size, crop_size, 3))
    shape, keras_weights = (crop_size, crop_size, 3), "imagenet" if weights == "imagenet" else None
    if backbone == "small_cnn":
        features = small_cnn(inputs)
    elif backbone == "vgg16":
        base = keras.applications.VGG16(include_top=False, weights=keras_weights, input_shape=shape)
        base.trainable = weights != "imagenet"  # the lab freezes the pretrained layers
        features = base(CaffePreprocess()(inputs))
    else:
        base = keras.applications.MobileNetV3Small(include_top=False, weights=keras_weights, input_shape=shape,
                                                   include_preprocessing=True)  # expects 0-255
        base.trainable = weights != "imagenet"
        features = base(keras.layers.Rescaling(255.0)(inputs))
    x = keras.layers.Flatten()(features) if head == "flatten" else keras.layers.GlobalAveragePooling2D()(features)
    x = keras.layers.Dense(4096, activation="relu")(x)
    x = keras.layers.Dropout(0.5)(x)
    x = keras.layers.Dense(1024, activation="relu")(x)
    x = keras.layers.Dropout(0.5)(x)
    outputs = keras.layers.Dense(classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name=f"wild_model_{backbone}_{head}")


# ---------------------------------------------------------------------------
# ImageNet weights


WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"
WEIGHT_FILES = {  # what keras.applications looks for in $KERAS_HOME/models, and where it comes from
    "vgg16": "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "mobilenet_v3_small": "mobilenet_v3/weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
}


def check_imagenet_weights(backbone: str) -> None:
    """Fail at once, with what to do, when the weights are neither cached nor downloadable."""
    keras_home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser()
    weight_file = keras_home / "models" / Path(WEIGHT_FILES[backbone]).name
    if weight_file.is_file():
        return
    reachable = False
    if not os.environ.get("LAB_OFFLINE"):
        try:  # Keras' own download has no timeout: probe first, so an offline machine does not hang
            socket.create_connection(("storage.googleapis.com", 443), timeout=5).close()
            reachable = True
        except OSError:
            pass
    if not reachable:
        raise UserError(
            f"--backbone {backbone} needs ImageNet weights, which are not in the Keras cache and cannot be "
            f"downloaded (no network). Either put {weight_file.name} (from {WEIGHTS_URL}{WEIGHT_FILES[backbone]}) "
            f"into {weight_file.parent}/, or pass --weights none to train the backbone from scratch, or use "
            "--backbone small_cnn (the CPU default).")


# ---------------------------------------------------------------------------
# The offline stand-in


def make_standin(folder: Path, images_per_class: int, seed: int) -> None:
    """Write ``folder/<class>/*.jpg``: a learnable 10-class stand-in for Oregon Wildlife.

    Class ``k`` is a shape (circle, square, triangle, diamond, ring: ``k % 5``) filled
    with a hue of its own (``36 * k`` degrees), at a random place and size on a
    random muted, noisy gradient; photos are 300-500 px on each side. Two broken
    files go into the first class: a truncated JPEG and a text file named ``.jpg``.
    """
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for label, class_name in enumerate(CLASS_NAMES):
        class_folder = folder / class_name
        class_folder.mkdir()
        hue = 36 * label
        for number in range(images_per_class):
            width, height = (int(side) for side in rng.integers(300, 501, size=2))
            gradient = np.linspace(0.0, 1.0, width)[np.newaxis, :, np.newaxis]
            low, high = rng.uniform(60, 200, size=(2, 1, 1, 3))
            background = low + (high - low) * gradient + rng.normal(0, 12, size=(height, width, 3))
            picture = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8)).filter(ImageFilter.BLUR)
            draw = ImageDraw.Draw(picture)
            radius = rng.uniform(0.18, 0.3) * min(width, height)
            x, y = rng.uniform(radius, width - radius), rng.uniform(radius, height - radius)
            colour = f"hsv({(hue + rng.integers(-8, 9)) % 360},{rng.integers(60, 95)}%,{rng.integers(55, 95)}%)"
            box = [x - radius, y - radius, x + radius, y + radius]
            shape = label % 5
            if shape == 0:
                draw.ellipse(box, fill=colour)
            elif shape == 1:
                draw.rectangle(box, fill=colour)
            elif shape == 2:
                draw.polygon([(x, box[1]), (box[2], box[3]), (box[0], box[3])], fill=colour)
            elif shape == 3:
                draw.polygon([(x, box[1]), (box[2], y), (x, box[3]), (box[0], y)], fill=colour)
            else:
                draw.ellipse(box, outline=colour, width=max(6, int(radius / 3)))
            picture.save(class_folder / f"{class_name}_{number:04d}.jpg", quality=85)
    good = (folder / CLASS_NAMES[0] / f"{CLASS_NAMES[0]}_0000.jpg").read_bytes()
    (folder / CLASS_NAMES[0] / "broken_truncated.jpg").write_bytes(good[: len(good) // 3])
    (folder / CLASS_NAMES[0] / "broken_not_an_image.jpg").write_text("this is a text file, not a photo\n")


def standin_folder(images_per_class: int, seed: int) -> Path:
    """The stand-in folder in the Keras cache, generated once (atomically) per size and seed."""
    target = datasets.cache_dir() / f"oregon_wildlife_standin_{images_per_class}x10_seed{seed}"
    if not target.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".standin-"))
        try:
            make_standin(staging / "images", images_per_class, seed)
            shutil.rmtree(target, ignore_errors=True)
            os.replace(staging / "images", target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target
