"""
Title: Assignment: Oregon Wildlife input pipelines, from image files and from TFRecords
Description: One model trained four times from the same initial weights, each time fed
by a different input pipeline over the same JPEG photos: naive (the lab's: one image at
a time through Python), augmentation (random crop, flip, brightness, contrast; still not
optimised), optimized (parallel decoding, cache, vectorised parallel map, prefetch) and
TFRecord (the same split written once with tfrecord_tools, read with its loader). Each
run draws a timeline; a table and analysis.md say where the time went. Measured on
this 2-core CPU, small_cnn, 3 epochs, 3,000 CIFAR-10 photos upscaled to 300x300 (2,400
train / 600 test), quiet machine: naive 42.5 s (43% input wait), augmentation 94.7 s
(its per-image Python map is the bottleneck: 75% input wait), optimized 31.6 s (3.4%
input wait), TFRecord 30.5 s (2.7%; +1.4 s to write and verify the records once);
213 s in all; test accuracy 0.23-0.28 (chance 0.10; blown-up 32x32 pictures, 3 epochs
from scratch). An earlier run under load from other jobs took 155 / 350 / 76 / 61 s.
Run: python assignment_wildlife.py --data-dir oregon_wildlife   (quick offline: --limit 200)

Defaults, and why. The lab's model is VGG16 (ImageNet weights, frozen) under a
174M-parameter Flatten/Dense head (at its 300x300 input; 107M at the 224x224 crop fed
here), trained at batch size 1 with a loss that applies softmax twice; it ends at
chance (10%). Here the loss is fixed (probabilities in, from_logits=False), the batch
size is 32, and the backbone is a flag:

* ``--backbone small_cnn`` (default): a 4-convolution CNN trained from scratch; on a
  2-core CPU it trains at 100-140 images/s at 224x224 when the input keeps up, so a
  run with no flags (the generated stand-in, 1,000 photos, 4 pipelines x 3 epochs)
  takes a few minutes, and ``--limit 200`` about a minute of CPU.
* ``--backbone mobilenet_v3_small``: ImageNet features, light enough for a CPU.
* ``--backbone vgg16``: the lab's model (needs a GPU to be practical).
* ``--head flatten`` is the lab's head; ``--head gap`` puts GlobalAveragePooling
  before the same Dense 4096/1024 layers (frozen VGG16 at the 224x224 crop: 6.3M
  instead of 107M trainable parameters, counted with Keras). Default: flatten for
  vgg16, gap otherwise.
* ImageNet weights come from the Keras cache (``~/.keras/models`` or
  ``$KERAS_HOME/models``) or a download; offline, the script stops at once and says
  which file to put there, or to pass ``--weights none``.

Image size 300 and crop 224 are the lab's. Without ``--data-dir`` (and with no
``./oregon_wildlife`` folder) a stand-in of generated photo-sized JPEGs is made.
Outputs in ``--out``: train.csv, test.csv, samples.png, augmentation_examples.png,
timeline_<pipeline>.png, results.md, analysis.md, metrics.json, initial.weights.h5,
tfrecords/.
"""

# %% [markdown]
# # Assignment: Oregon Wildlife
# Implement the input pipeline of a CNN that classifies 10 kinds of wildlife, write and
# read TFRecords, and explain where the time goes. The dataset (about 7,200 photos in
# 10 folders) is a filtered Kaggle set; unzip it as `oregon_wildlife/<class>/*.jpg`.
#
# ## Setup

# %%
import collections
import csv
import math
import os
import shutil
import socket
import tempfile
from pathlib import Path

from common import cli

cli.quiet_tensorflow()
import keras
import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw, ImageFilter
from sklearn.model_selection import train_test_split
from sklearn.utils import shuffle

import tfrecord_tools
from common import datasets, plots, report, timeline
from common.errors import UserError

PIPELINES = ("naive", "augmentation", "optimized", "tfrecord")
BACKBONES = ("small_cnn", "mobilenet_v3_small", "vgg16")

parser = cli.make_parser(
    __doc__, epochs=3, batch_size=32, out="outputs/assignment",
    batch_size_help="examples per training step (default: 32; lab: 1, one image per step, slow and noisy)")
parser.add_argument("--backbone", choices=BACKBONES, default="small_cnn",
                    help="feature extractor: small_cnn (from scratch, CPU-friendly; default), "
                         "mobilenet_v3_small (ImageNet, light), vgg16 (the lab's)")
parser.add_argument("--weights", choices=["auto", "imagenet", "none"], default="auto",
                    help="backbone weights: auto = imagenet for vgg16 and mobilenet_v3_small, "
                         "none for small_cnn; none = random initialisation, trained from scratch")
parser.add_argument("--head", choices=["auto", "flatten", "gap"], default="auto",
                    help="flatten: the lab's Flatten + Dense 4096/1024 head; gap: GlobalAveragePooling "
                         "before the same Dense layers; auto: flatten for vgg16, gap otherwise")
parser.add_argument("--image-size", type=int, default=300, help="images are resized to this square (lab: 300)")
parser.add_argument("--crop-size", type=int, default=224, help="crop fed to the model (lab: 224)")
parser.add_argument("--learning-rate", type=float, default=1e-3, help="Adam learning rate (lab: 0.001)")
parser.add_argument("--shuffle-buffer", type=cli.positive_int, default=1000,
                    help="decoded images held for shuffling (default: 1000; lab: 10000, but each 300x300 "
                         "image is 270 kB, so 10000 hold 2.7 GB)")
parser.add_argument("--pipelines", default=",".join(PIPELINES),
                    help=f"comma-separated subset of {', '.join(PIPELINES)} to run (default: all)")
parser.add_argument("--workers", type=int, default=None,
                    help="processes that check images and write TFRecords (default: all CPU cores)")
config = cli.parse(parser)
run_clock = report.Stopwatch()

IMAGE_SIZE = config.image_size  # the lab's IMAGE_HEIGHT = IMAGE_WIDTH
CROP_SIZE = config.crop_size  # the lab's IMAGE_SIZE_CROPPED
STANDIN_IMAGES_PER_CLASS = 100  # 1,000 generated photos: a run with no flags takes minutes
pipelines_to_run = [name.strip() for name in config.pipelines.split(",") if name.strip()]
unknown = sorted(set(pipelines_to_run) - set(PIPELINES))
if unknown or not pipelines_to_run:
    raise UserError(f"--pipelines {config.pipelines!r}: unknown {unknown or 'empty list'}; "
                    f"choose from {', '.join(PIPELINES)}")
if not 32 <= CROP_SIZE <= IMAGE_SIZE:
    raise UserError(f"--crop-size {CROP_SIZE} must be at least 32 (the backbones downsample 32x) and at most "
                    f"--image-size {IMAGE_SIZE}")
weights = config.weights if config.weights != "auto" else ("none" if config.backbone == "small_cnn" else "imagenet")
head = config.head if config.head != "auto" else ("flatten" if config.backbone == "vgg16" else "gap")
if config.backbone == "small_cnn" and weights == "imagenet":
    raise UserError("--backbone small_cnn has no ImageNet weights: drop --weights imagenet, or choose "
                    "--backbone mobilenet_v3_small or vgg16")


WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"
WEIGHT_FILES = {  # what keras.applications looks for in $KERAS_HOME/models, and where it comes from
    "vgg16": "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "mobilenet_v3_small": "mobilenet_v3/weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
}


def check_imagenet_weights(backbone):
    """Fail at once, with what to do, when the weights are neither cached nor downloadable."""
    keras_home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser()
    weight_file = keras_home / "models" / Path(WEIGHT_FILES[backbone]).name
    if weight_file.is_file():
        return
    reachable = False
    if not os.environ.get("LAB_OFFLINE"):
        try:  # keras' own download has no timeout: probe first, so an offline machine does not hang
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


if weights == "imagenet":  # fail now, not after minutes of data preparation
    check_imagenet_weights(config.backbone)

# %% [markdown]
# ## Find the images
# The lab drops `.gif` and `.bmp` files by their extension, which keeps a PNG named
# `.jpg` and a truncated JPEG (both crash training later) and drops a good GIF.
# `tfrecord_tools.scan_images` sniffs each file's format from its content and decodes
# it fully; whatever fails is listed with its reason, not fed to training.
#
# With no `--data-dir`, the lab's `./oregon_wildlife` is used if it is there;
# otherwise a stand-in is generated: 10 classes of photo-sized JPEGs (300-500 px),
# each class an animal-coloured shape on a textured background, plus two broken
# files that the scan must reject.

# %%
STANDIN_CLASSES = ["bald_eagle", "black_bear", "cougar", "deer", "nutria", "raccoon", "raven", "red_fox",
                   "sea_lions", "virginia_opossum"]  # the real dataset's folder names


def make_wildlife_standin(folder, images_per_class, seed):
    """Write ``folder/<class>/*.jpg``: a learnable 10-class stand-in for Oregon Wildlife.

    Class ``k`` is a shape (circle, square, triangle, diamond, ring: ``k % 5``) filled
    with a hue of its own (``36 * k`` degrees), at a random place and size on a
    random muted, noisy gradient; photos are 300-500 px on each side. Two broken
    files go into the first class: a truncated JPEG and a text file named ``.jpg``.

    Parameters
    ----------
    folder : Path
        Created; must not exist yet.
    images_per_class : int
    seed : int
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for label, class_name in enumerate(STANDIN_CLASSES):
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
            centre_x = rng.uniform(radius, width - radius)
            centre_y = rng.uniform(radius, height - radius)
            colour = f"hsv({(hue + rng.integers(-8, 9)) % 360},{rng.integers(60, 95)}%,{rng.integers(55, 95)}%)"
            box = [centre_x - radius, centre_y - radius, centre_x + radius, centre_y + radius]
            shape = label % 5
            if shape == 0:
                draw.ellipse(box, fill=colour)
            elif shape == 1:
                draw.rectangle(box, fill=colour)
            elif shape == 2:
                draw.polygon([(centre_x, box[1]), (box[2], box[3]), (box[0], box[3])], fill=colour)
            elif shape == 3:
                draw.polygon([(centre_x, box[1]), (box[2], centre_y), (centre_x, box[3]), (box[0], centre_y)],
                             fill=colour)
            else:
                draw.ellipse(box, outline=colour, width=max(6, int(radius / 3)))
            picture.save(class_folder / f"{class_name}_{number:04d}.jpg", quality=85)
    good = (folder / STANDIN_CLASSES[0] / f"{STANDIN_CLASSES[0]}_0000.jpg").read_bytes()
    (folder / STANDIN_CLASSES[0] / "broken_truncated.jpg").write_bytes(good[: len(good) // 3])
    (folder / STANDIN_CLASSES[0] / "broken_not_an_image.jpg").write_text("this is a text file, not a photo\n")


def standin_folder(images_per_class, seed):
    """The stand-in folder in the Keras cache, generated once (atomically) per size and seed."""
    target = datasets.cache_dir() / f"oregon_wildlife_standin_{images_per_class}x10_seed{seed}"
    if not target.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".standin-"))
        try:
            make_wildlife_standin(staging / "images", images_per_class, seed)
            shutil.rmtree(target, ignore_errors=True)
            os.replace(staging / "images", target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def find_data_root():
    """``(folder, is_standin, why)``: where the class folders are."""
    if config.data_dir is not None and not config.data_dir.is_dir():
        raise UserError(f"--data-dir {config.data_dir} is a file; expected the folder that holds one folder of "
                        "images per class (the unzipped oregon_wildlife/)")
    if config.data != "standin":
        candidates = [config.data_dir] if config.data_dir is not None else [Path("oregon_wildlife")]
        for candidate in candidates:
            if candidate.is_dir():
                # Accept the folder that holds the unzipped oregon_wildlife/, too.
                nested = candidate / "oregon_wildlife"
                return (nested if nested.is_dir() else candidate), False, ""
        if config.data == "real":
            raise UserError("--data real needs the Oregon Wildlife images: download the assignment's zip, "
                            "unzip it so that oregon_wildlife/<class>/*.jpg exist, and pass "
                            "--data-dir oregon_wildlife (any folder of class folders of images works)")
    why = "--data standin" if config.data == "standin" else "no --data-dir and no ./oregon_wildlife folder"
    per_class = STANDIN_IMAGES_PER_CLASS
    if config.limit is not None:  # generate only what a --limit run will use (plus the test share)
        per_class = min(per_class, max(8, math.ceil(config.limit / 0.8 / 10) + 2))
    return standin_folder(per_class, config.seed), True, why


data_root, is_standin, standin_reason = find_data_root()
if is_standin:
    report.banner(f"OFFLINE STAND-IN for Oregon Wildlife, not the real photos\nwhy: {standin_reason}\n"
                  f"data: {data_root} (generated shapes; 2 broken files on purpose)\n"
                  "Accuracies and timings are not the lab's. Use --data-dir oregon_wildlife for the real data.")
print(f"data root: {data_root}")
clock = report.Stopwatch()
try:
    scan = tfrecord_tools.scan_images(data_root, workers=config.workers, progress=True)
except tfrecord_tools.TFRecordToolsError as error:
    raise UserError(f"cannot use --data-dir {data_root}: {error}") from None
print("classes:")
for class_name, count in scan.class_counts().items():
    print(f"  {class_name:<20} {count:>5} images")


def decodable_by_tensorflow(image):
    """Most photos are plain JPEGs that TensorFlow decodes; check the unusual ones (CMYK, TIFF...)."""
    if not image.reencode:
        return True
    try:
        tf.io.decode_image(tf.io.read_file(image.path), channels=3, expand_animations=False)
        return True
    except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError):
        return False


usable, rejected = [], [{"path": item.relative_path, "reason": item.reason} for item in scan.rejected]
for image in scan.images:
    if decodable_by_tensorflow(image):
        usable.append(image)
    else:
        rejected.append({"path": image.relative_path,
                         "reason": f"{image.source_format} ({image.mode}) that TensorFlow cannot decode"})
print(f"\ntotal img num: {len(usable)} ({len(rejected)} dropped, {clock.seconds:.1f} s to check every file)")
for item in rejected[:10]:
    print(f"  dropped {item['path']}: {item['reason']}")
if len(rejected) > 10:
    print(f"  ... and {len(rejected) - 10} more (all listed in metrics.json)")
if not usable:
    raise UserError(f"no usable image under {data_root}: expected <class>/<image> files")

# %% [markdown]
# ## Labels and the 80/20 split
# The label map comes from the sorted class names, and each image's label from the
# class folder the scan found it in (the top folder under the data root, also for a
# photo in a subfolder such as `deer/extra/`; the lab's `Path(path).parent.name`
# would take `extra`). Exact duplicates (the same SHA-256, which the scan computed)
# are dropped, keeping the first by path: a photo that sits in two folders could
# otherwise land in both halves, and the test would score images seen in training.
# The lab shuffles the paths with `random_state=1` and splits 80/20 with
# `random_state=0`; we sort the paths first (a folder listing's order differs
# between machines, so the lab's split is not reproducible) and stratify, so every
# class keeps its share in both halves. A data folder that is already split
# (`train/<class>/`, `test/<class>/`) keeps its own split.

# %%
label_names = scan.class_names
label_to_index = {name: index for index, name in enumerate(label_names)}
index_to_label = dict(enumerate(label_names))
print(label_to_index)
first_with_hash, duplicates = {}, []
for image in sorted(usable, key=lambda image: image.path):
    if image.sha256 in first_with_hash:
        duplicates.append({"path": image.relative_path, "same_as": first_with_hash[image.sha256].relative_path})
    else:
        first_with_hash[image.sha256] = image
unique_images = sorted(first_with_hash.values(), key=lambda image: image.path)
print(f"exact duplicates dropped: {len(duplicates)} (same SHA-256 as an earlier file; kept the first by path)")
for item in duplicates[:5]:
    print(f"  dropped {item['path']}: same bytes as {item['same_as']}")
if len(duplicates) > 5:
    print(f"  ... and {len(duplicates) - 5} more (all listed in metrics.json)")
image_by_path = {image.path: image for image in unique_images}

if scan.layout == "splits":
    given = collections.Counter(image.split for image in unique_images)
    if not given["train"] or not given["test"]:
        raise UserError(f"{data_root} is already split into {sorted(given)} folders, but has no usable images in "
                        f"{'train' if not given['train'] else 'test'}/: expected train/<class>/<image> and "
                        "test/<class>/<image> (or one folder per class, to split 80/20 here)")
    if given["validation"]:
        print(f"{data_root} is already split: using its train/ and test/ folders as they are; "
              f"{given['validation']} images in validation/ are left out")
    else:
        print(f"{data_root} is already split: using its train/ and test/ folders as they are")
    img_path_train = [image.path for image in unique_images if image.split == "train"]
    img_path_test = [image.path for image in unique_images if image.split == "test"]
    img_path_train = shuffle(img_path_train, random_state=1)
    label_train = [image_by_path[path].label for path in img_path_train]
    label_test = [image_by_path[path].label for path in img_path_test]
    print("First 10 label indices: ", label_train[:10])
else:
    all_image_paths = shuffle([image.path for image in unique_images], random_state=1)
    all_image_label = [image_by_path[path].label for path in all_image_paths]
    print("First 10 label indices: ", all_image_label[:10])
    # A class with fewer than 2 images cannot be stratified; the error says which one.
    too_small = [name for name, count in collections.Counter(all_image_label).items() if count < 2]
    if too_small:
        raise UserError(f"classes {[index_to_label[label] for label in too_small]} in {data_root} have fewer "
                        "than 2 usable images; add images or remove those folders")
    img_path_train, img_path_test, label_train, label_test = train_test_split(
        all_image_paths, all_image_label, test_size=0.2, random_state=0, stratify=all_image_label)
if config.limit is not None and config.limit < len(img_path_train):
    # --limit: a seeded, stratified share of each half (test in proportion).
    test_size = max(len(label_names), round(config.limit * len(img_path_test) / len(img_path_train)))
    keep_train = datasets.stratified_sample(np.array(label_train), config.limit, config.seed)
    keep_test = datasets.stratified_sample(np.array(label_test), min(test_size, len(label_test)), config.seed)
    img_path_train, label_train = [img_path_train[i] for i in keep_train], [label_train[i] for i in keep_train]
    img_path_test, label_test = [img_path_test[i] for i in keep_test], [label_test[i] for i in keep_test]
print(f"training data: {len(img_path_train)}")
print(f"testing data: {len(img_path_test)}")

TRAIN_CSV, TEST_CSV = config.out / "train.csv", config.out / "test.csv"
for csv_path, paths, labels in ((TRAIN_CSV, img_path_train, label_train), (TEST_CSV, img_path_test, label_test)):
    with report.atomic_path(csv_path) as temporary, open(temporary, "w", newline="") as csv_file:
        writer = csv.writer(csv_file)
        writer.writerow(["img_path", "label"])
        writer.writerows(zip(paths, labels, strict=True))
print(f"wrote {TRAIN_CSV} and {TEST_CSV}")

# %% [markdown]
# ## The time-measured source
# `common.timeline.time_measured_dataset` is the lab's `TimeMeasuredDataset`: opening
# a CSV file is an **Open** span, reading one image is a **Read** span. The lab's
# `read_file` reads, decodes and resizes in Python, one image at a time. Every element
# is `(image, label, tag)`; the tag `(source, epoch, index)` rides along so that the
# training loop can put its **Wait**, **Train** and **Test** spans on the same picture.

# %%


def open_csv(path):
    """One CSV file -> its ``(img_path, label)`` rows."""
    with open(path, newline="") as csv_file:
        return [(row["img_path"], int(row["label"])) for row in csv.DictReader(csv_file)]


def decode_and_resize(encoded):
    """JPEG/PNG/GIF/BMP bytes -> (IMAGE_SIZE, IMAGE_SIZE, 3) uint8, squashed like the lab's resize."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image = tf.image.resize(image, (IMAGE_SIZE, IMAGE_SIZE))
    return tf.cast(tf.round(tf.clip_by_value(image, 0, 255)), tf.uint8)


def read_image(row):
    """The lab's ``read_file``: one path -> decoded, resized image (uint8: 4x less memory than float)."""
    path, label = row
    return decode_and_resize(tf.io.read_file(path)).numpy(), label


def read_bytes(row):
    """For the optimized pipeline: only read the file; decoding moves to a parallel map."""
    path, label = row
    with open(path, "rb") as image_file:
        return image_file.read(), label


IMAGE_SPEC = (tf.TensorSpec((IMAGE_SIZE, IMAGE_SIZE, 3), tf.uint8), tf.TensorSpec((), tf.int64))
BYTES_SPEC = (tf.TensorSpec((), tf.string), tf.TensorSpec((), tf.int64))

peek_recorder = timeline.Recorder()
peek = timeline.time_measured_dataset([str(TRAIN_CSV)], open_csv, read_image, IMAGE_SPEC, peek_recorder)
sample_images, sample_titles = [], []
for image, label, tag in peek.take(8):  # noqa: B007 (the last tag is printed below)
    sample_images.append(image.numpy())
    sample_titles.append(index_to_label[int(label)])
print(f"first element: tag (source, epoch, index) = {tag.numpy().tolist()}, image {image.shape} {image.dtype}")
for span in peek_recorder.spans()[:3]:
    print(f"  {span.stage:<5} source {span.source} epoch {span.epoch} index {span.index:>2}: "
          f"{1000 * span.duration:.2f} ms")
report.save_figure(plots.image_grid(np.stack(sample_images), sample_titles, columns=4,
                                   title="Training images and their labels"), config.out / "samples.png")
print(f"saved {config.out / 'samples.png'}")

# %% [markdown]
# ## The maps
# Every pipeline feeds the model the same thing: a `CROP_SIZE` square in [0, 1].
# Testing takes the centre crop. Training with augmentation takes a random crop,
# a random horizontal flip, and random brightness and contrast, drawn independently
# for every image, so the same function works on one image (element-wise map) or a
# whole batch (vectorised map). (`tf.image.random_crop` on a batch would cut the
# same window from every image, as the lab's batch-wise map does.)

# %%


def as_float(images):
    return tf.cast(images, tf.float32) / 255.0


def center_crop(images, labels):
    """(..., IMAGE_SIZE, IMAGE_SIZE, 3) uint8 -> (..., CROP_SIZE, CROP_SIZE, 3) float32 in [0, 1]."""
    offset = (IMAGE_SIZE - CROP_SIZE) // 2
    return as_float(images[..., offset:offset + CROP_SIZE, offset:offset + CROP_SIZE, :]), labels


def random_crops(batch, size):
    """An independent random ``size`` x ``size`` window of every image in ``batch`` (B, H, W, 3) -> float32."""
    count = tf.shape(batch)[0]
    height, width = batch.shape[1], batch.shape[2]
    top = tf.cast(tf.random.uniform([count], 0, height - size + 1, dtype=tf.int32), tf.float32)
    left = tf.cast(tf.random.uniform([count], 0, width - size + 1, dtype=tf.int32), tf.float32)
    # Boxes on whole pixels: crop_and_resize then copies the pixels exactly, one op for the batch.
    boxes = tf.stack([top / (height - 1), left / (width - 1),
                      (top + size - 1) / (height - 1), (left + size - 1) / (width - 1)], axis=1)
    return tf.image.crop_and_resize(batch, boxes, tf.range(count), (size, size))


def augment(images, labels):
    """Random crop, flip, brightness and contrast: one image (H, W, 3) or a batch (B, H, W, 3), uint8 in."""
    single = images.shape.rank == 3
    batch = images[tf.newaxis] if single else images
    count = tf.shape(batch)[0]
    crops = random_crops(tf.cast(batch, tf.float32), CROP_SIZE) / 255.0
    crops = tf.image.random_flip_left_right(crops)  # per image, also on a batch
    brightness = tf.random.uniform([count, 1, 1, 1], -0.15, 0.15)  # the lab's 63 was meant for 0-255 pixels
    contrast = tf.random.uniform([count, 1, 1, 1], 0.7, 1.3)
    means = tf.reduce_mean(crops, axis=[1, 2, 3], keepdims=True)
    crops = tf.clip_by_value((crops - means) * contrast + means + brightness, 0.0, 1.0)
    # STUDENT: add your own augmentations here (tf.image.random_saturation, random_hue,
    # keras.layers.RandomRotation, ...). Keep each one per image and keep values in [0, 1];
    # the grid below (augmentation_examples.png) shows whether they do what you meant.
    return (crops[0] if single else crops), labels


# Check by eye that the map does what we want (the lab's "plot the image like block [84]").
originals = np.stack(sample_images[:6])
tiles, titles = [], []
for image, title in zip(originals, sample_titles[:6], strict=True):
    tiles.append(center_crop(image, 0)[0].numpy())
    titles.append(f"{title}\ncentre crop")
    for number in range(3):
        tiles.append(augment(tf.constant(image), 0)[0].numpy())
        titles.append(f"augmented {number + 1}")
report.save_figure(plots.image_grid(np.stack(tiles), titles, columns=4,
                                    title="Test map (left) and three random training augmentations"),
                   config.out / "augmentation_examples.png")
print(f"saved {config.out / 'augmentation_examples.png'}")

# %% [markdown]
# ## The pipelines
# **naive**: the lab's. One image at a time: read and decode in the Python source,
# centre-crop in a Python map (`in_python=True` is the lab's `map_decorator`), batch.
# Nothing runs in parallel; TensorFlow's automatic rewrites (map-and-batch fusion,
# injected prefetch) are switched off so we measure the pipeline as written.
#
# **augmentation**: the same, plus `shuffle` and the random `augment` map, still one
# image at a time, still not optimised.
#
# **optimized**: the source only reads file bytes; decoding runs in a parallel map;
# the decoded images are cached in memory after epoch 1; shuffle, batch, then the
# same `augment` on a whole batch at once (vectorised) in parallel graph code; and
# prefetch overlaps input with training. The cache sits *before* the random map:
# the lab caches after it, which replays epoch 1's crops in every later epoch.
#
# **tfrecord**: the same split written once into TFRecord shards by `tfrecord_tools`
# (decode-checked, verified), read back with its loader (interleaved shard reads,
# batched parsing, parallel decode and resize, cache), then the same batch `augment`.
# Its reading happens inside the loader, so on the timeline it shows as **Wait**
# whenever it holds the trainer up.

# %%
naive_options = tf.data.Options()
naive_options.experimental_optimization.apply_default_optimizations = False
naive_options.experimental_optimization.map_and_batch_fusion = False
naive_options.experimental_optimization.inject_prefetch = False
AUTOTUNE = tf.data.AUTOTUNE
recorders = {name: timeline.Recorder() for name in PIPELINES}


def naive_test(recorder):
    """The naive test half: one image at a time, centre crop in a Python map, batch."""
    return (timeline.time_measured_dataset([str(TEST_CSV)], open_csv, read_image, IMAGE_SPEC, recorder)
            .map(timeline.timed_map(center_crop, recorder, in_python=True))
            .batch(config.batch_size)
            .with_options(naive_options))


def naive_pipeline(recorder):
    train = (timeline.time_measured_dataset([str(TRAIN_CSV)], open_csv, read_image, IMAGE_SPEC, recorder)
             .map(timeline.timed_map(center_crop, recorder, in_python=True))
             .batch(config.batch_size)
             .with_options(naive_options))
    return train, naive_test(recorder)


def augmentation_pipeline(recorder):
    train = (timeline.time_measured_dataset([str(TRAIN_CSV)], open_csv, read_image, IMAGE_SPEC, recorder)
             .shuffle(config.shuffle_buffer, seed=config.seed)
             .map(timeline.timed_map(augment, recorder, in_python=True))
             .batch(config.batch_size)
             .with_options(naive_options))
    return train, naive_test(recorder)  # testing never augments


def decode_element(encoded, labels):
    return decode_and_resize(encoded), labels


def optimized_pipeline(recorder):
    # STUDENT: this is the place for your own optimised pipeline. Ideas to measure:
    # cache to a file (`.cache("path")`) when the decoded images do not fit in memory,
    # decode a smaller image (tf.io.decode_and_crop_jpeg), a different batch size, or
    # several CSV shards read with `interleave=True`.
    def source(csv_path):
        return (timeline.time_measured_dataset([str(csv_path)], open_csv, read_bytes, BYTES_SPEC, recorder)
                .map(timeline.timed_map(decode_element, recorder, stage="Decode"), num_parallel_calls=AUTOTUNE))

    train = (source(TRAIN_CSV)
             .cache()
             .shuffle(config.shuffle_buffer, seed=config.seed)
             .batch(config.batch_size)
             .map(timeline.timed_map(augment, recorder), num_parallel_calls=AUTOTUNE)
             .prefetch(AUTOTUNE))
    # The test half caches the decoded uint8 images, as the training half does, and
    # centre-crops after the cache: the float32 crops would take 2.2x the memory
    # (602 kB against 270 kB a photo at 224/300), and slicing a crop costs little.
    # Nothing random runs before the cache, so every epoch tests the same images in
    # the same order.
    test = (source(TEST_CSV)
            .cache()
            .batch(config.batch_size)
            .map(timeline.timed_map(center_crop, recorder), num_parallel_calls=AUTOTUNE)
            .prefetch(AUTOTUNE))
    return train, test


def tagged(dataset, recorder):
    """Give the loader's ``(image, label)`` elements a timeline tag ``(source, epoch, index)``.

    ``flat_map`` over ``range(1)`` runs its function once per pass, so the pass
    counter is read afresh every epoch.
    """
    source = recorder.new_source()

    def next_pass():
        return np.int64(recorder.next_pass(source))

    def one_pass(_):
        data_pass = tf.numpy_function(next_pass, [], tf.int64, stateful=True)
        return dataset.enumerate().map(
            lambda index, element: (*element, tf.stack([tf.constant(source, tf.int64), data_pass, index])))

    return tf.data.Dataset.range(1).flat_map(one_pass)


TFRECORD_DIR = config.out / "tfrecords"
tfrecord_summary = None


def write_tfrecords():
    """Write the split above once: a ``train/<class>/`` + ``test/<class>/`` tree of links to the photos.

    ``tfrecord_tools`` takes a folder that is already split as it is, so the records hold
    exactly the images of train.csv and test.csv. Each link keeps the photo's path
    below its class folder (``deer/extra/x.jpg`` stays in class ``deer``); from a data
    folder that is already split, the leading ``train/`` or ``test/`` is dropped first.
    A second run with the same split reuses the finished shards.
    """
    links = config.out / "split_links"
    shutil.rmtree(links, ignore_errors=True)
    for split, paths in (("train", img_path_train), ("test", img_path_test)):
        for path in paths:
            image = image_by_path[path]
            parts = Path(image.relative_path).parts  # [<split>/]<class>/.../<name>
            if scan.layout == "splits":
                parts = parts[1:]
            link = links / split / Path(*parts)
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(Path(path).resolve(), link)
    summary = tfrecord_tools.write_dataset(links, TFRECORD_DIR, seed=config.seed, workers=config.workers,
                                           overwrite=True, progress=True)
    print(tfrecord_tools.format_summary(summary))
    verify_clock = report.Stopwatch()
    tfrecord_tools.verify(TFRECORD_DIR, workers=config.workers)
    summary["verify_seconds"] = verify_clock.seconds
    print(f"verified every record of {TFRECORD_DIR} in {summary['verify_seconds']:.1f} s")
    return summary


def tfrecord_pipeline(recorder):
    global tfrecord_summary
    tfrecord_summary = write_tfrecords()
    train = (tagged(tfrecord_tools.load(TFRECORD_DIR, "train", batch_size=None, image_size=(IMAGE_SIZE, IMAGE_SIZE),
                                        cache=True, shuffle=True, seed=config.seed,
                                        shuffle_buffer=config.shuffle_buffer), recorder)
             .batch(config.batch_size)
             .map(timeline.timed_map(augment, recorder), num_parallel_calls=AUTOTUNE)
             .prefetch(AUTOTUNE))
    test = (tagged(tfrecord_tools.load(TFRECORD_DIR, "test", batch_size=None, image_size=(IMAGE_SIZE, IMAGE_SIZE),
                                       cache=True, shuffle=False), recorder)
            .batch(config.batch_size)
            .map(timeline.timed_map(center_crop, recorder), num_parallel_calls=AUTOTUNE)
            .prefetch(AUTOTUNE))
    return train, test


build_pipeline = {"naive": naive_pipeline, "augmentation": augmentation_pipeline,
                  "optimized": optimized_pipeline, "tfrecord": tfrecord_pipeline}

# %% [markdown]
# ## The model
# The lab's model is VGG16 (ImageNet weights, frozen) under Flatten, Dense 4096,
# Dropout, Dense 1024, Dropout and a softmax layer. Three fixes:
# * the lab's loss says `from_logits=True` on a softmax output, so softmax is applied
#   twice and the gradients nearly vanish: its run stays at 10% (chance). Our loss
#   takes the probabilities the model outputs (`from_logits=False`);
# * batch size 32 instead of 1 (one image per step of the lab's 174M-parameter head,
#   at 300x300, or of its 107M at our 224x224 crop, is slow and noisy);
# * ImageNet backbones expect their own input scaling (VGG16: BGR, mean pixel
#   subtracted); the lab feeds [0, 1] images. The model now scales inside itself.


# %%
class CaffePreprocess(keras.layers.Layer):
    """VGG16's ImageNet input: [0, 1] RGB -> 0-255 BGR minus the ImageNet mean pixel."""

    def call(self, images):
        bgr = keras.ops.flip(images, axis=-1) * 255.0
        return bgr - keras.ops.convert_to_tensor([103.939, 116.779, 123.68], dtype=images.dtype)


def small_cnn(inputs):
    """A light convolutional feature extractor for CPUs: 4 conv blocks, 32x downsampling."""
    x = keras.layers.Conv2D(16, 5, strides=2, padding="same", activation="relu")(inputs)
    for filters in (32, 64, 128):
        x = keras.layers.MaxPooling2D(2)(x)
        # Keras' default momentum 0.99 needs hundreds of steps before the moving statistics
        # used at test time fit; a --limit run has a few dozen.
        x = keras.layers.BatchNormalization(momentum=0.9)(x)
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
    return keras.layers.MaxPooling2D(2)(x)


def build_model(backbone, weights, head, classes):
    """Backbone + the lab's dense head, softmax output; input (CROP_SIZE, CROP_SIZE, 3) in [0, 1]."""
    inputs = keras.Input((CROP_SIZE, CROP_SIZE, 3))
    shape = (CROP_SIZE, CROP_SIZE, 3)
    keras_weights = "imagenet" if weights == "imagenet" else None
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
    # STUDENT: the lab's head. Try fewer units, or one Dense layer, and compare time and accuracy.
    x = keras.layers.Dense(4096, activation="relu")(x)
    x = keras.layers.Dropout(0.5)(x)
    x = keras.layers.Dense(1024, activation="relu")(x)
    x = keras.layers.Dropout(0.5)(x)
    outputs = keras.layers.Dense(classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name=f"wild_model_{backbone}_{head}")


wild_model = build_model(config.backbone, weights, head, len(label_names))
wild_model.summary(line_length=100)
trainable_parameters = int(sum(np.prod(variable.shape) for variable in wild_model.trainable_weights))
# Save the initial weights once (atomically), so every pipeline trains from the same start.
initial_weights = config.out / "initial.weights.h5"
partial_weights = config.out / ".initial.partial.weights.h5"  # Keras wants the .weights.h5 suffix
wild_model.save_weights(partial_weights)
os.replace(partial_weights, initial_weights)
loss_object = keras.losses.SparseCategoricalCrossentropy(from_logits=False)  # the model outputs probabilities

# %% [markdown]
# ## Train with each pipeline
# `timeline.timelined_benchmark` is the lab's training loop without its sleeps: every
# batch, the time spent waiting for input is a **Wait** span and the step is a
# **Train** or **Test** span. Each run starts from the saved weights with a fresh
# Adam optimizer (the lab reuses one, so later runs inherit its moment estimates).

# %%
train_steps = math.ceil(len(img_path_train) / config.batch_size)
test_steps = math.ceil(len(img_path_test) / config.batch_size)
results = {}
for name in pipelines_to_run:
    report.banner(f"{name} pipeline: {config.epochs} epochs, {len(img_path_train)} train / "
                  f"{len(img_path_test)} test images, batch {config.batch_size}")
    train_dataset, test_dataset = build_pipeline[name](recorders[name])
    wild_model.load_weights(initial_weights)
    history = timeline.timelined_benchmark(
        wild_model, train_dataset, test_dataset, epochs=config.epochs, recorder=recorders[name],
        optimizer=keras.optimizers.Adam(config.learning_rate), loss=loss_object,
        train_steps=train_steps, test_steps=test_steps)
    summary = timeline.summarize(recorders[name].spans())
    results[name] = {
        "seconds": sum(row["seconds"] for row in history),
        "epochs": history,
        "images_per_second": sum(row["train_images"] for row in history)
        / max(sum(row["train_seconds"] for row in history), 1e-9),
        "test_accuracy": history[-1]["test_accuracy"],
        "input_wait_share": summary["input_wait_share"],
        "stages": summary["stages"],
    }
    print(f"Execution time: {results[name]['seconds']:.1f} s")

# %% [markdown]
# ## Timelines
# One row per stage, bars coloured by the epoch in which the work ran, all on the same
# time scale. Naive and augmentation: Read and Map fill the gaps between Train steps
# in every epoch. Optimized: Read (file bytes only), Decode and Map overlap Train in
# epoch 1; from epoch 2 on the decoded images come from the cache and only Map runs
# (the random augmentation, batched; the test half's centre crop). TFRecord: no Read
# or Decode rows, because tfrecord_tools' loader reads, parses and decodes inside
# itself, unrecorded (it shows as Wait when it holds the trainer up); Map overlaps
# Train in every epoch. After each epoch, a Teardown bar is TensorFlow deleting that
# epoch's finished iterators.

# %%
longest = max(result["seconds"] for result in results.values())
for name, result in results.items():
    timeline.draw_timeline(recorders[name], f"{name} pipeline: {result['seconds']:.1f} s", min_width=longest,
                           path=config.out / f"timeline_{name}.png")
    print(f"saved {config.out / f'timeline_{name}.png'}")

# %% [markdown]
# ## The comparison

# %%


def table_rows():
    for name, result in results.items():
        epochs = result["epochs"]
        later = [row["seconds"] for row in epochs[1:]]
        yield {
            "pipeline": name,
            "epoch_1_s": epochs[0]["seconds"],
            "later_epoch_s": sum(later) / len(later) if later else None,
            "total_s": result["seconds"],
            "images_per_s": result["images_per_second"],
            "test_accuracy": result["test_accuracy"],
            "input_wait_share": result["input_wait_share"],
        }


table = list(table_rows())
table_lines = ["| pipeline | epoch 1 s | later epochs s | total s | train images/s | test accuracy | input wait |",
               "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
for row in table:
    later = "-" if row["later_epoch_s"] is None else f"{row['later_epoch_s']:.1f}"
    table_lines.append(f"| {row['pipeline']} | {row['epoch_1_s']:.1f} | {later} | {row['total_s']:.1f} | "
                       f"{row['images_per_s']:.0f} | {row['test_accuracy']:.4f} | "
                       f"{100 * (row['input_wait_share'] or 0):.1f}% |")
results_table = "\n".join(table_lines)
print(results_table)
with report.atomic_path(config.out / "results.md") as temporary:
    temporary.write_text(results_table + "\n", encoding="utf-8")

# %% [markdown]
# ## Analysis
# The lab's questions, answered from this run's numbers: which step was the
# bottleneck and why, what augmentation did to accuracy, and what the optimisations
# and TFRecords did to time. (STUDENT: read it, then write your own.)

# %%


def busiest_input_stage(stages):
    """The input stage with the most busy time, and that time."""
    input_stages = {stage: value["busy_seconds"] for stage, value in stages.items()
                    if stage in ("Open", "Read", "Decode", "Map")}
    if not input_stages:
        return None, 0.0
    stage = max(input_stages, key=input_stages.get)
    return stage, input_stages[stage]


STAGE_MEANING = {  # what each input stage does in the unoptimised pipelines and in the parallel ones
    "naive": {"Read": "reading, decoding and resizing one JPEG at a time in Python",
              "Map": "the per-image Python map calls", "Open": "opening the CSV file"},
    "parallel": {"Read": "reading the files' bytes", "Decode": "decoding and resizing the JPEGs in parallel",
                 "Map": "the batched map in graph code", "Open": "opening the CSV file"},
}


def bottleneck_paragraph():
    """The naive run's bottleneck if it ran, else the first run's, in words that fit that pipeline."""
    name = "naive" if "naive" in results else pipelines_to_run[0]
    run = results[name]
    stage, busy = busiest_input_stage(run["stages"])
    train_busy = run["stages"].get("Train", {}).get("busy_seconds", 0.0)
    wait = run["input_wait_share"] or 0.0
    unoptimised = name in ("naive", "augmentation")
    meaning = STAGE_MEANING["naive" if unoptimised else "parallel"].get(stage, stage)
    if unoptimised:
        # Nothing overlaps here, so busy time is time the trainer waited: compare it with training.
        if stage is not None and busy > train_busy:
            return (f"In the {name} pipeline the bottleneck is the input: {stage} took {busy:.1f} s ({meaning}) "
                    f"against {train_busy:.1f} s of training steps, and the trainer waited for input "
                    f"{100 * wait:.0f}% of the time. Nothing overlaps: each image is read, decoded and mapped "
                    "while the model waits, then the model trains while the input side waits.")
        return (f"In the {name} pipeline the model is the bottleneck: {train_busy:.1f} s of training steps "
                f"against {busy:.1f} s for the busiest input stage ({stage}); the trainer waited for input "
                f"{100 * wait:.0f}% of the time. A faster input pipeline cannot help much here; a faster device "
                "or a smaller model would.")
    # A parallel, prefetching pipeline works while the model trains: its busy time (summed over
    # threads) is not waiting, so only the trainer's input-wait share says who sets the pace.
    if stage is None:
        busiest = "no input stage was recorded"
    else:
        busiest = f"the busiest input stage, {stage} ({meaning}), was busy {busy:.1f} s in all, across its threads"
    if name == "tfrecord":
        busiest += " (the loader's reading and decoding is not recorded: it shows as Wait)"
    if wait > 0.2:
        return (f"In the {name} pipeline (no naive run to compare) the input still holds the trainer up: it "
                f"waited for input {100 * wait:.0f}% of the time, against {train_busy:.1f} s of training steps; "
                f"{busiest}. The input runs in parallel and overlaps training, so more parallel calls, a "
                "cheaper map or a faster disk would help.")
    return (f"In the {name} pipeline (no naive run to compare) the model is the bottleneck: the trainer "
            f"waited for input only {100 * wait:.0f}% of the time, against {train_busy:.1f} s of training steps; "
            f"{busiest}, overlapping training. A faster device or a smaller model would help more than a faster "
            "input pipeline.")


def analysis_text():
    lines = [f"# Analysis: {len(img_path_train)} training / {len(img_path_test)} test images, "
             f"{config.backbone} ({head} head, {trainable_parameters:,} trainable parameters), "
             f"{config.epochs} epochs, batch {config.batch_size}", ""]
    if is_standin:
        lines += ["Data: the generated **stand-in** (shapes on textures), not the real photos: the figures "
                  "show the method, not the lab's results.", ""]
    lines += [results_table, ""]
    first = results["naive" if "naive" in results else pipelines_to_run[0]]
    train_busy = first["stages"].get("Train", {}).get("busy_seconds", 0.0)
    test_busy = first["stages"].get("Test", {}).get("busy_seconds", 0.0)
    lines += ["## Bottleneck", bottleneck_paragraph()]
    if test_busy > 0.25 * max(train_busy, 1e-9):
        lines.append(f"Testing cost more than one might expect: {test_busy:.1f} s of test steps, "
                     f"{100 * test_busy / max(train_busy, 1e-9):.0f}% of the training steps' time, for a "
                     "quarter as many images: a test step runs the whole model too.")
    lines.append("")
    if "naive" in results and "augmentation" in results:
        naive, augmented = results["naive"], results["augmentation"]
        change = augmented["test_accuracy"] - naive["test_accuracy"]
        lines += ["## Augmentation and accuracy",
                  f"Test accuracy went from {naive['test_accuracy']:.3f} (naive) to {augmented['test_accuracy']:.3f} "
                  f"with augmentation ({'+' if change >= 0 else ''}{change:.3f}), and the run took "
                  f"{augmented['seconds']:.1f} s against {naive['seconds']:.1f} s."]
        if change < 0.02:
            lines.append("Random crops, flips and lighting changes make the training images harder and more varied; "
                         f"in {config.epochs} epochs the model has not caught up yet. Augmentation pays off when "
                         "the model would otherwise overfit, usually after more epochs.")
        else:
            lines.append("The varied training images helped the model generalise even in a few epochs.")
        lines.append("")
    if "optimized" in results:
        optimized = results["optimized"]
        baseline = "augmentation" if "augmentation" in results else pipelines_to_run[0]
        if baseline != "optimized":
            slow = results[baseline]
            later = [row["seconds"] for row in optimized["epochs"][1:]]
            lines += ["## What the optimisations did to time",
                      f"The same transformations took {slow['seconds']:.1f} s in the {baseline} pipeline and "
                      f"{optimized['seconds']:.1f} s optimized ({slow['seconds'] / optimized['seconds']:.1f}x). "
                      f"The trainer's input wait fell from {100 * (slow['input_wait_share'] or 0):.0f}% to "
                      f"{100 * (optimized['input_wait_share'] or 0):.0f}%."]
            if later:
                lines.append(f"Epoch 1 took {optimized['epochs'][0]['seconds']:.1f} s (decoding every photo, in "
                             f"parallel, overlapped with training); later epochs {sum(later) / len(later):.1f} s, "
                             "served from the cache. What remains is the model's own time: on this CPU the "
                             "training step, not the input, now sets the pace.")
            lines.append("")
    if "tfrecord" in results and tfrecord_summary is not None:
        records = results["tfrecord"]
        write_seconds = tfrecord_summary["seconds"] + tfrecord_summary["verify_seconds"]
        totals = tfrecord_summary["totals"]
        lines += ["## What TFRecords did to time",
                  f"Writing {totals['images']:,} images into {totals['shards']} shards "
                  f"({totals['bytes'] / 1e6:.1f} MB) took {tfrecord_summary['seconds']:.1f} s, verifying them "
                  f"{tfrecord_summary['verify_seconds']:.1f} s: a one-off cost, paid again only when the data change."]
        if "optimized" in results:
            optimized = results["optimized"]
            first_gain = optimized["epochs"][0]["seconds"] - records["epochs"][0]["seconds"]
            lines.append(
                f"Epoch 1 took {records['epochs'][0]['seconds']:.1f} s from TFRecords against "
                f"{optimized['epochs'][0]['seconds']:.1f} s from the loose files ({first_gain:+.1f} s saved); "
                f"the whole run {records['seconds']:.1f} s against {optimized['seconds']:.1f} s. The records are "
                "a few large files read sequentially instead of thousands of small ones opened one by one, and "
                "parsing is batched; but both pipelines still decode every JPEG, and after epoch 1 both read "
                "from the cache, so the gain is at most the file-opening part of epoch 1. It grows with slow "
                "or network storage and with datasets too large to cache"
                + (f"; here it would take about {write_seconds / max(first_gain, 1e-9):.0f} first epochs to "
                   "earn back the writing." if first_gain > 0 else "; here it does not earn back the writing."))
        lines.append("")
    accuracies = {name: result["test_accuracy"] for name, result in results.items()}
    lines.append(f"Chance is {1 / len(label_names):.2f}; the final test accuracies were "
                 + ", ".join(f"{name} {value:.3f}" for name, value in accuracies.items())
                 + ". Runs from the same weights differ in accuracy because each pipeline shows the images in "
                 "a different order and with different random augmentations.")
    return "\n".join(lines) + "\n"


analysis = analysis_text()
with report.atomic_path(config.out / "analysis.md") as temporary:
    temporary.write_text(analysis, encoding="utf-8")

# %% [markdown]
# ## Summary

# %%
data_description = {
    "name": "oregon_wildlife_standin" if is_standin else "oregon_wildlife",
    "source": str(data_root),
    "is_standin": is_standin,
    "class_names": label_names,
    "train_images": len(img_path_train),
    "test_images": len(img_path_test),
    "train_class_counts": dict(collections.Counter(index_to_label[label] for label in label_train)),
    "test_class_counts": dict(collections.Counter(index_to_label[label] for label in label_test)),
    "rejected": rejected,
    "layout": scan.layout,
    "duplicates_dropped": len(duplicates),
    "duplicates": duplicates,
    "limit": config.limit,
}
report.write_json(config.out / "metrics.json", {
    "data": data_description,
    "config": {"backbone": config.backbone, "weights": weights, "head": head, "epochs": config.epochs,
               "batch_size": config.batch_size, "image_size": IMAGE_SIZE, "crop_size": CROP_SIZE,
               "learning_rate": config.learning_rate, "shuffle_buffer": config.shuffle_buffer,
               "seed": config.seed, "pipelines": pipelines_to_run,
               "trainable_parameters": trainable_parameters,
               "total_parameters": int(wild_model.count_params())},
    "results": results,
    "table": table,
    "tfrecords": None if tfrecord_summary is None else {
        "folder": str(TFRECORD_DIR), "images": tfrecord_summary["totals"]["images"],
        "shards": tfrecord_summary["totals"]["shards"], "bytes": tfrecord_summary["totals"]["bytes"],
        "write_seconds": tfrecord_summary["seconds"], "verify_seconds": tfrecord_summary["verify_seconds"],
        "shards_reused": tfrecord_summary["shards_reused"]},
    "run": report.run_info(),
})
print()
print(analysis)
print(report.summary_line(
    "assignment_wildlife",
    **{f"{name}_s": result["seconds"] for name, result in results.items()},
    **{f"{name}_accuracy": result["test_accuracy"] for name, result in results.items()},
    total_s=run_clock.seconds))
