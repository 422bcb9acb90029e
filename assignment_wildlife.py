"""
Title: Assignment: Oregon Wildlife input pipelines, from image files and from TFRecords
Description: One model trained four times from the same initial weights, each time fed by
another input pipeline over the same photos: naive (the lab's: one image at a time through
Python), augmentation (random crop, flip, brightness and contrast; still unoptimised),
optimized (parallel decoding, cache, a vectorised parallel map, prefetch) and TFRecord (the
same split written once with `python -m tfrecord_tools write`, read with its loader). Each
run draws a timeline; results.md compares them and analysis.md answers the lab's questions.
Result: naive 42.5 s (43% input wait), augmentation 94.7 s (75%), optimized 31.6 s (3.4%),
TFRecord 30.5 s (2.7%), test accuracy 0.23-0.28 (chance 0.10): small_cnn, 3 epochs, 2,400
train / 600 test CIFAR-10 photos upscaled to 300x300, 2 CPU cores (AMD EPYC), quiet machine.
Run: python assignment_wildlife.py --limit 200 --epochs 2   (a quick run on the stand-in, ~1 min)
Check: python assignment_wildlife.py --check   (your code measured, a quick run, then the rubric: a few minutes)

The lab's model is VGG16 (ImageNet weights, frozen) under a Flatten/Dense head, trained
at batch size 1 with a loss that applies softmax twice; it ends at chance. Here the loss
takes probabilities, the batch size is 32, and the backbone is a flag: small_cnn (from
scratch, for CPUs; default), mobilenet_v3_small or vgg16 (ImageNet; vgg16 needs a GPU).
Without --data-dir (and no ./oregon_wildlife folder) a stand-in of generated photos is used.
"""

# %% [markdown]
# # Assignment: Oregon Wildlife
# Implement the input pipelines of a CNN that classifies 10 kinds of wildlife, write and
# read TFRecords, and explain where the time goes. Each `# TODO` below says what to write.
#
# ## Setup
# The knobs are flags (`--help`); in a notebook, set them in `ARGS`.

# %% tags=["parameters"]
# In a notebook, flags come from here (on the command line, from sys.argv), e.g.:
# ARGS = "--limit 200 --epochs 2"
ARGS = ""

# %%
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import cli, console
from common.errors import UserError
from common.run import Run

PIPELINES = ("naive", "augmentation", "optimized", "tfrecord")
DEFAULT_OUT = "outputs/assignment"
parser = cli.make_parser(__doc__, epochs=3, batch_size=32, out=DEFAULT_OUT,
                         batch_size_help="examples per training step (default: 32; lab: 1, slow and noisy)")
parser.add_argument("--pipelines", nargs="+", choices=PIPELINES, default=list(PIPELINES),
                    help="the pipelines to run, space-separated (default: all four)")
parser.add_argument("--backbone", choices=("small_cnn", "mobilenet_v3_small", "vgg16"), default="small_cnn",
                    help="small_cnn (from scratch, CPU-friendly; default), mobilenet_v3_small (ImageNet, light), "
                         "vgg16 (the lab's)")
parser.add_argument("--weights", choices=("auto", "imagenet", "none"), default="auto",
                    help="auto: imagenet for vgg16 and mobilenet_v3_small, none (random) for small_cnn")
parser.add_argument("--head", choices=("auto", "flatten", "gap"), default="auto",
                    help="flatten: the lab's Flatten + Dense 4096/1024; gap: GlobalAveragePooling before the same "
                         "Dense layers; auto: flatten for vgg16, gap otherwise")
parser.add_argument("--image-size", type=cli.positive_int, default=300, help="photos are resized to this square "
                    "(lab: 300)")
parser.add_argument("--crop-size", type=cli.positive_int, default=224, help="crop fed to the model (lab: 224)")
parser.add_argument("--learning-rate", type=float, default=1e-3, help="Adam learning rate (lab: 0.001)")
parser.add_argument("--shuffle-buffer", type=cli.positive_int, default=1000,
                    help="decoded photos held for shuffling (default: 1000; lab: 10000, 2.7 GB at 300x300)")
parser.add_argument("--workers", type=cli.positive_int, default=None,
                    help="processes that write the TFRecords (default: all CPU cores)")
parser.add_argument("--probe", action="store_true",
                    help="measure the TODO functions themselves (pipeline graphs, every epoch, labels, speed) and "
                    "stop before training: writes probe.json into --out (--check and the teacher's grader use it)")
parser.add_argument("--check", action="store_true",
                    help="probe this script and run it quickly (stand-in, --limit 300, 3 epochs, into "
                         "outputs/assignment_check "
                         "unless --out is given), then print the assignment's rubric, pass or fail per line")
config = cli.parse(parser, ARGS)
if config.check:  # the rubric: common/assignment_check.py
    from common import assignment_check

    if "__file__" not in globals():
        raise UserError("--check runs the script file: use it from a terminal, python assignment_wildlife.py --check")
    sys.exit(assignment_check.run_check(
        __file__, config, out=config.out if str(config.out) != DEFAULT_OUT else assignment_check.CHECK_OUT))
if not 32 <= config.crop_size <= config.image_size:
    parser.error(f"--crop-size {config.crop_size} must be at least 32 (the backbones downsample 32x) and at most "
                 f"--image-size {config.image_size}")
weights = config.weights if config.weights != "auto" else ("none" if config.backbone == "small_cnn" else "imagenet")
head = config.head if config.head != "auto" else ("flatten" if config.backbone == "vgg16" else "gap")
if config.backbone == "small_cnn" and weights == "imagenet":
    parser.error("--backbone small_cnn has no ImageNet weights: drop --weights imagenet, or choose another backbone")

from common import datasets

# Lists the files, opens none, and checks --limit against the classes it found.
photo_folder = datasets.find_wildlife(config.data, config.data_dir, seed=config.seed, limit=config.limit,
                                      global_batch=config.batch_size)
run = Run(config, "assignment_wildlife")

import numpy as np

with console.quiet_tensorflow():  # TensorFlow's start-up notices stay out of the output
    import keras
    import tensorflow as tf

import tfrecord_tools
from common import assignment_check, models, plots, timeline, training

if weights == "imagenet":  # fail now, not after minutes of data preparation
    models.check_imagenet_weights(config.backbone)
keras.utils.set_random_seed(config.seed)  # Python, NumPy and TensorFlow: the same initial weights every run
IMAGE_SIZE = config.image_size  # the lab's IMAGE_HEIGHT = IMAGE_WIDTH
CROP_SIZE = config.crop_size  # the lab's IMAGE_SIZE_CROPPED
AUTOTUNE = tf.data.AUTOTUNE

# %% [markdown]
# ## Find the images, label them, split 80/20
# `datasets.load_wildlife` does what the lab's first cells do, more carefully: it sniffs
# each file's format from its content and decodes it fully (the lab drops `.gif`/`.bmp` by
# extension, which keeps a PNG named `.jpg` and a truncated JPEG), drops exact
# duplicates, labels each photo by its class folder (sorted names, as in the lab) and
# splits 80/20, stratified; `--limit N` then keeps N training photos, stratified, and a
# proportional share of the test photos. The lab's `train.csv` and `test.csv` hold the split.

# %%
data = datasets.load_wildlife(photo_folder, limit=config.limit, seed=config.seed)
label_names = data.class_names
STAND_IN = " (stand-in)" if data.is_standin else ""
TRAIN_CSV = datasets.write_csv(run.path("train.csv"), data.train_paths, data.train_labels)
TEST_CSV = datasets.write_csv(run.path("test.csv"), data.test_paths, data.test_labels)

# %% [markdown]
# ## The time-measured source
# `timeline.time_measured_dataset` is the lab's `TimeMeasuredDataset`: opening a CSV file
# is an **Open** span, reading one image a **Read** span. Every element is
# `(image, label, tag)`; the tag `(source, epoch, index)` rides along so that the training
# loop can put its **Wait**, **Train** and **Test** spans on the same picture.

# %%


def decode_and_resize(encoded):
    """JPEG/PNG/GIF/BMP bytes -> (IMAGE_SIZE, IMAGE_SIZE, 3) uint8, squashed like the lab's resize."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image = tf.image.resize(image, (IMAGE_SIZE, IMAGE_SIZE))
    return tf.cast(tf.round(tf.clip_by_value(image, 0, 255)), tf.uint8)


def read_image(row):
    """The lab's ``read_file``: one CSV row -> decoded, resized image (uint8: 4x less memory than float)."""
    path, label = row
    return decode_and_resize(tf.io.read_file(path)).numpy(), label


def read_bytes(row):
    """For the optimized pipeline: only read the file; decoding moves to a parallel map."""
    path, label = row
    with open(path, "rb") as image_file:
        return image_file.read(), label


IMAGE_SPEC = (tf.TensorSpec((IMAGE_SIZE, IMAGE_SIZE, 3), tf.uint8), tf.TensorSpec((), tf.int64))
BYTES_SPEC = (tf.TensorSpec((), tf.string), tf.TensorSpec((), tf.int64))

peek = timeline.time_measured_dataset([str(TRAIN_CSV)], datasets.read_csv, read_image, IMAGE_SPEC,
                                      timeline.Recorder())
sample_images, sample_titles = [], []
for image, label, _ in peek.take(8):
    sample_images.append(image.numpy())
    sample_titles.append(label_names[int(label)])
_, _, tag = next(iter(peek))
print(f"an element: image {image.shape} {image.dtype}, label {int(label)}, tag (source, epoch, index) "
      f"{tag.numpy().tolist()}")
run.save_figure(plots.image_grid(np.stack(sample_images), sample_titles, columns=4,
                                 title=f"Training images and their labels{STAND_IN}"), "samples.png")

# %% [markdown]
# ## The maps
# Every pipeline feeds the model the same thing: a `CROP_SIZE` square in [0, 1]. Testing
# takes the centre crop. Training with augmentation takes random crops, flips and lighting
# changes, drawn independently for every image, so that the same function works on one
# image (an element-wise map) or on a whole batch (a vectorised map).
# (`tf.image.random_crop` on a batch would cut the same window from every image.)

# %%


def center_crop(images, labels):
    """(..., IMAGE_SIZE, IMAGE_SIZE, 3) uint8 -> (..., CROP_SIZE, CROP_SIZE, 3) float32 in [0, 1]."""
    offset = (IMAGE_SIZE - CROP_SIZE) // 2
    crops = images[..., offset:offset + CROP_SIZE, offset:offset + CROP_SIZE, :]
    return tf.cast(crops, tf.float32) / 255.0, labels


def random_crops(batch, size):
    """An independent random ``size`` x ``size`` window of every image in ``batch`` (B, H, W, 3) float32."""
    count = tf.shape(batch)[0]
    height, width = batch.shape[1], batch.shape[2]
    top = tf.cast(tf.random.uniform([count], 0, height - size + 1, dtype=tf.int32), tf.float32)
    left = tf.cast(tf.random.uniform([count], 0, width - size + 1, dtype=tf.int32), tf.float32)
    # Boxes on whole pixels: crop_and_resize then copies the pixels exactly, one op for the batch.
    boxes = tf.stack([top / (height - 1), left / (width - 1),
                      (top + size - 1) / (height - 1), (left + size - 1) / (width - 1)], axis=1)
    return tf.image.crop_and_resize(batch, boxes, tf.range(count), (size, size))


def augment(images, labels):
    """Random crop, flip, brightness and contrast of one image (H, W, 3) or a batch (B, H, W, 3), uint8 in."""
    # TODO 1: the augmentation map. Return `(crops, labels)`: random CROP_SIZE crops in [0, 1], randomly
    # flipped, brightened and contrasted, drawn independently for every image, for one image or a batch alike.
    # Hints:
    # - give a single image (`images.shape.rank == 3`) a batch axis (`images[tf.newaxis]`);
    # - `random_crops(tf.cast(batch, tf.float32), CROP_SIZE) / 255.0`: one window per image;
    # - `tf.image.random_flip_left_right(crops)` (it flips each image of a batch on its own);
    # - with `count = tf.shape(batch)[0]`: brightness, add `tf.random.uniform([count, 1, 1, 1], -0.15, 0.15)`;
    #   contrast, scale each image's distance from its mean (`tf.reduce_mean(crops, axis=[1, 2, 3],
    #   keepdims=True)`) by `tf.random.uniform([count, 1, 1, 1], 0.7, 1.3)`;
    # - `tf.clip_by_value(crops, 0.0, 1.0)`, and drop the batch axis again for a single image.
    ### BEGIN SOLUTION
    single = images.shape.rank == 3
    batch = images[tf.newaxis] if single else images
    count = tf.shape(batch)[0]
    crops = random_crops(tf.cast(batch, tf.float32), CROP_SIZE) / 255.0
    crops = tf.image.random_flip_left_right(crops)
    brightness = tf.random.uniform([count, 1, 1, 1], -0.15, 0.15)  # the lab's 63 was meant for 0-255 pixels
    contrast = tf.random.uniform([count, 1, 1, 1], 0.7, 1.3)
    means = tf.reduce_mean(crops, axis=[1, 2, 3], keepdims=True)
    crops = tf.clip_by_value((crops - means) * contrast + means + brightness, 0.0, 1.0)
    return (crops[0] if single else crops), labels
    ### END SOLUTION


# Check by eye that the map does what we want (the lab's "plot the image like block [84]").
augment_todo = None
try:
    tiles, titles = [], []
    for image, title in zip(sample_images[:6], sample_titles[:6], strict=True):
        tiles.append(center_crop(image, 0)[0].numpy())
        titles.append(f"{title}\ncentre crop")
        for number in range(3):
            tiles.append(augment(tf.constant(image), 0)[0].numpy())
            titles.append(f"augmented {number + 1}")
    run.save_figure(plots.image_grid(np.stack(tiles), titles, columns=4,
                                     title=f"Test map (left) and three random training augmentations{STAND_IN}"),
                    "augmentation_examples.png")
except NotImplementedError as todo:
    augment_todo = assignment_check.todo_name(todo, "TODO 1: the augmentation map")
    print(f"augmentation_examples.png: skipped ({assignment_check.not_written_reason(augment_todo)})")

# %% [markdown]
# ## The pipelines
# **naive** (the lab's): one image at a time, read and decoded in the Python source,
# centre-cropped in a Python map (`in_python=True` is the lab's `map_decorator`),
# batched. TensorFlow's automatic rewrites are off, so we measure the pipeline as written.
# Each builder returns `(train, test)` datasets of `(images, labels, tags)` batches; testing
# never augments.

# %%
naive_options = timeline.as_written()  # tf.data's automatic rewrites off


def naive_test(recorder):
    """The naive test half: one image at a time, centre crop in a Python map, batch."""
    return (timeline.time_measured_dataset([str(TEST_CSV)], datasets.read_csv, read_image, IMAGE_SPEC, recorder)
            .map(timeline.timed_map(center_crop, recorder, in_python=True))
            .batch(config.batch_size)
            .with_options(naive_options))


def naive_pipeline(recorder):
    train = (timeline.time_measured_dataset([str(TRAIN_CSV)], datasets.read_csv, read_image, IMAGE_SPEC, recorder)
             .map(timeline.timed_map(center_crop, recorder, in_python=True))
             .batch(config.batch_size)
             .with_options(naive_options))
    return train, naive_test(recorder)


def augmentation_pipeline(recorder):
    # TODO 2: the augmentation pipeline. Build `train` like naive_pipeline's, shuffled and mapped with
    # `augment` one image at a time in Python (the lab's transformations, none of its optimizations: no
    # num_parallel_calls, cache or prefetch); return `train, naive_test(recorder)`.
    # Hints:
    # `timeline.time_measured_dataset([str(TRAIN_CSV)], datasets.read_csv, read_image, IMAGE_SPEC, recorder)`,
    # `.shuffle(config.shuffle_buffer, seed=config.seed)`,
    # `.map(timeline.timed_map(augment, recorder, in_python=True))` (one image at a time, timed),
    # `.batch(config.batch_size)` and `.with_options(naive_options)`; return `train, naive_test(recorder)`.
    ### BEGIN SOLUTION
    train = (timeline.time_measured_dataset([str(TRAIN_CSV)], datasets.read_csv, read_image, IMAGE_SPEC, recorder)
             .shuffle(config.shuffle_buffer, seed=config.seed)
             .map(timeline.timed_map(augment, recorder, in_python=True))
             .batch(config.batch_size)
             .with_options(naive_options))
    return train, naive_test(recorder)
    ### END SOLUTION


def decode_element(encoded, labels):
    return decode_and_resize(encoded), labels


def optimized_pipeline(recorder):
    # TODO 3: the optimized pipeline. Return `train, test`: photos decoded in parallel and cached before the
    # random map, then shuffled, batched, mapped with `augment` a whole batch at a time in parallel, and
    # prefetched (test: `center_crop`, not shuffled).
    # Hints:
    # For both halves, start from
    # `timeline.time_measured_dataset([str(csv_path)], datasets.read_csv, read_bytes, BYTES_SPEC, recorder)`
    # (the source only reads file bytes) and decode in parallel:
    # `.map(timeline.timed_map(decode_element, recorder, stage="Decode"), num_parallel_calls=AUTOTUNE)`.
    # train: then `.cache()` (decoded photos kept after epoch 1: before the random map, or every epoch
    # would replay epoch 1's crops), `.shuffle(config.shuffle_buffer, seed=config.seed)`,
    # `.batch(config.batch_size)`, `.map(timeline.timed_map(augment, recorder), num_parallel_calls=AUTOTUNE)`
    # (a whole batch at once, in graph code) and `.prefetch(AUTOTUNE)`.
    # test: `.cache()`, `.batch(...)`, the same map with `center_crop`, `.prefetch(AUTOTUNE)`.
    ### BEGIN SOLUTION
    def decoded(csv_path):
        return (timeline.time_measured_dataset([str(csv_path)], datasets.read_csv, read_bytes, BYTES_SPEC, recorder)
                .map(timeline.timed_map(decode_element, recorder, stage="Decode"), num_parallel_calls=AUTOTUNE))

    train = (decoded(TRAIN_CSV)
             .cache()
             .shuffle(config.shuffle_buffer, seed=config.seed)
             .batch(config.batch_size)
             .map(timeline.timed_map(augment, recorder), num_parallel_calls=AUTOTUNE)
             .prefetch(AUTOTUNE))
    # The uint8 photos are cached, and cropped after the cache: float32 crops would take 2.2x the memory.
    test = (decoded(TEST_CSV)
            .cache()
            .batch(config.batch_size)
            .map(timeline.timed_map(center_crop, recorder), num_parallel_calls=AUTOTUNE)
            .prefetch(AUTOTUNE))
    return train, test
    ### END SOLUTION


# %% [markdown]
# ## Write the TFRecords
# The same split, written once into TFRecord shards with tfrecord_tools' command line, as
# you would type it: `python -m tfrecord_tools write SRC OUT`, then `verify OUT`.
# `datasets.link_split` lays train.csv and test.csv out as `SRC/train/<class>/` and
# `SRC/test/<class>/` (links to the photos), and the tool keeps a split folder as it is.

# %%
TFRECORD_DIR = (run.out / "tfrecords").resolve()
TOOL = [sys.executable, "-m", "tfrecord_tools"]
TOOL_FOLDER = Path(tfrecord_tools.__file__).resolve().parent.parent  # run the tool from where it is


def write_tfrecords(split_folder, tfrecord_folder):
    # TODO 4: the TFRecords. Write `split_folder` into `tfrecord_folder` with tfrecord_tools' command line,
    # in a subprocess, as you would type it, with the photos stored shrunk to IMAGE_SIZE; then verify them.
    # Hints:
    # `subprocess.run([*TOOL, ...], check=True, cwd=TOOL_FOLDER)` (TOOL is `python -m tfrecord_tools`):
    # - `write SRC OUT --max-side IMAGE_SIZE --seed SEED --overwrite` with SRC = split_folder,
    #   OUT = tfrecord_folder and SEED = config.seed (add `--workers N` when config.workers is set);
    #   `--max-side` stores each photo already shrunk to at most IMAGE_SIZE px on its longer side, so
    #   that reading decodes a 300 px JPEG instead of a full-size photo;
    # - then `verify OUT`, which re-reads every shard and decodes every image.
    ### BEGIN SOLUTION
    workers = ["--workers", str(config.workers)] if config.workers else []
    subprocess.run([*TOOL, "write", str(split_folder), str(tfrecord_folder), "--max-side", str(IMAGE_SIZE),
                    "--seed", str(config.seed), "--overwrite", *workers], check=True, cwd=TOOL_FOLDER)
    subprocess.run([*TOOL, "verify", str(tfrecord_folder), *workers], check=True, cwd=TOOL_FOLDER)
    ### END SOLUTION


tfrecords = run.finished("tfrecords") if "tfrecord" in config.pipelines else None
tfrecords_todo = None
if tfrecords is None and "tfrecord" in config.pipelines:
    write_start = time.perf_counter()
    shutil.rmtree(TFRECORD_DIR, ignore_errors=True)  # an interrupted write's shards: start them over
    try:
        write_tfrecords(datasets.link_split(data, run.scratch("tfrecords").resolve() / "split"), TFRECORD_DIR)
    except NotImplementedError as todo:
        tfrecords_todo = assignment_check.todo_name(todo, "TODO 4: the TFRecords")
        run.skip("tfrecords", assignment_check.not_written_reason(tfrecords_todo))
    except subprocess.CalledProcessError as error:
        raise UserError(f"writing the TFRecords into {TFRECORD_DIR} failed: {' '.join(error.cmd[1:])} exited "
                        f"with status {error.returncode} (its message is above)") from None
    else:
        for written in sorted(TFRECORD_DIR.iterdir()):
            run.path(f"tfrecords/{written.name}")  # into the manifest
        sidecar = tfrecord_tools.read_sidecar(TFRECORD_DIR)
        totals, resize = sidecar["totals"], sidecar.get("resize") or {}
        tfrecords = run.complete("tfrecords", {
            "images": totals["images"], "shards": totals["shards"], "bytes": totals["bytes"],
            "seconds": time.perf_counter() - write_start,
            # Photos stored smaller than the files: the TFRecord pipeline decodes fewer pixels.
            "resized": resize.get("resized_images", 0) > 0})

# %% [markdown]
# ## The TFRecord pipeline
# `tfrecord_tools.load` reads, parses and decodes inside itself (interleaved shard reads,
# batched parsing, a parallel decode and resize, cache), unrecorded: on the timeline its
# work shows as **Wait** whenever it holds the trainer up.

# %%


def tfrecord_pipeline(recorder):
    # TODO 5: the TFRecord pipeline. Return `train, test` read from TFRECORD_DIR with `tfrecord_tools.load`,
    # tagged for the timeline, batched, mapped in parallel (`augment` for train, `center_crop` for test) and
    # prefetched.
    # Hints:
    # For each split ("train", "test"):
    # `tfrecord_tools.load(TFRECORD_DIR, split, batch_size=None, image_size=(IMAGE_SIZE, IMAGE_SIZE),
    # cache=True, shuffle=<True for train>, seed=config.seed, shuffle_buffer=config.shuffle_buffer)` gives
    # decoded uint8 photos; `timeline.with_timeline_tags(dataset, recorder)` adds the timeline's tags; then
    # `.batch(config.batch_size)`, `.map(timeline.timed_map(augment, recorder), num_parallel_calls=AUTOTUNE)`
    # (`center_crop` for test) and `.prefetch(AUTOTUNE)`. Return `train, test`.
    ### BEGIN SOLUTION
    def pipeline(split, batch_map):
        photos = tfrecord_tools.load(TFRECORD_DIR, split, batch_size=None, image_size=(IMAGE_SIZE, IMAGE_SIZE),
                                     cache=True, shuffle=split == "train", seed=config.seed,
                                     shuffle_buffer=config.shuffle_buffer)
        return (timeline.with_timeline_tags(photos, recorder)
                .batch(config.batch_size)
                .map(timeline.timed_map(batch_map, recorder), num_parallel_calls=AUTOTUNE)
                .prefetch(AUTOTUNE))

    return pipeline("train", augment), pipeline("test", center_crop)
    ### END SOLUTION


build_pipeline = {"naive": naive_pipeline, "augmentation": augmentation_pipeline,
                  "optimized": optimized_pipeline, "tfrecord": tfrecord_pipeline}

if config.probe:  # the rubric's way in: every TODO function measured, then stop before any training
    run.write_json("probe.json", assignment_check.probe(globals()))
    run.finish({}, {"probe": str(run.path("probe.json"))}, data=data)
    sys.exit(0)

# %% [markdown]
# ## The model
# The lab's VGG16 under Flatten, Dense 4096, Dropout, Dense 1024, Dropout, softmax, with
# three fixes: the loss takes the probabilities the model outputs (`from_logits=False`;
# the lab's `True` applies softmax twice and stays at chance), batch size 32 instead of 1,
# and each ImageNet backbone gets the input scaling it was trained with.

# %%
wild_model = models.wildlife_classifier(config.backbone, weights, head, len(label_names), CROP_SIZE)
wild_model.summary(line_length=100)
trainable_parameters = int(sum(np.prod(variable.shape) for variable in wild_model.trainable_weights))
initial_weights = training.starting_weights(wild_model, run)  # every pipeline trains from the same start
loss_object = keras.losses.SparseCategoricalCrossentropy(from_logits=False)  # the model outputs probabilities

# %% [markdown]
# ## Train with each pipeline
# `timeline.timelined_benchmark` is the lab's training loop without its sleeps: the time
# spent waiting for each batch is a **Wait** span, the step a **Train** or **Test** span.
# Each run starts from the saved weights with a fresh Adam optimizer. A pipeline whose TODO
# is not written yet is skipped; a pipeline that an interrupted run finished is read back.

# %%


def train_with(name):
    """Train ``wild_model`` fed by pipeline ``name``; its part's result, or None when it is not written yet."""
    recorder = timeline.Recorder()
    try:
        if name == "tfrecord" and tfrecords is None:
            raise NotImplementedError(f"it needs {tfrecords_todo or 'the TFRecords'}")
        train, test = build_pipeline[name](recorder)
        if name != "naive" and augment_todo:
            raise NotImplementedError(f"it needs {augment_todo}")
    except NotImplementedError as todo:
        run.skip(name, assignment_check.not_written(todo, f"the {name} pipeline"))
        return None
    console.banner(f"{name} pipeline: {console.count(config.epochs, 'epoch')}, {len(data.train_paths)} train / "
                  f"{len(data.test_paths)} test images, batch {config.batch_size}")
    wild_model.load_weights(initial_weights)
    history = timeline.timelined_benchmark(
        wild_model, train, test, epochs=config.epochs, recorder=recorder, loss=loss_object,
        optimizer=keras.optimizers.Adam(config.learning_rate),
        train_steps=-(-len(data.train_paths) // config.batch_size),
        test_steps=-(-len(data.test_paths) // config.batch_size))
    summary = timeline.summarize(recorder.spans())
    seconds = sum(row["seconds"] for row in history)
    print(f"Execution time: {seconds:.1f} s")
    run.save_figure(timeline.draw_timeline(recorder, f"{name} pipeline{STAND_IN}: {seconds:.1f} s"),
                    f"timeline_{name}.png")
    result = {"seconds": seconds, "epochs": history, "test_accuracy": history[-1]["test_accuracy"],
              "images_per_second": sum(row["train_images"] for row in history)
              / max(sum(row["train_seconds"] for row in history), 1e-9),
              "input_wait_share": summary["input_wait_share"], "stages": summary["stages"],
              "startup_wait_seconds": assignment_check.startup_wait_seconds(recorder.spans())}
    return run.complete(name, result)


results = {}
for name in PIPELINES:
    if name in config.pipelines:
        result = run.finished(name) or train_with(name)
        if result is not None:
            results[name] = result

# %% [markdown]
# ## The comparison and the analysis
# The lab asks: summarize what you did, and explain the accuracy and time results. Which
# step is the bottleneck on your device, and why? Did any step cost more than you expected?

# %%
measured = assignment_check.measurements(
    results, epochs=config.epochs, train_images=len(data.train_paths), test_images=len(data.test_paths),
    is_standin=data.is_standin, tfrecords=tfrecords)
results_table = assignment_check.results_table(measured)
print(results_table)
run.write_text("results.md", results_table + "\n")


def answer_questions(measured):
    # TODO 6: the answers. Answer the lab's questions from your run's numbers: return one answer (a few
    # sentences, quoting your numbers) per key of `assignment_check.QUESTIONS`.
    # Hints:
    # The keys are "summary", "accuracy", "time", "bottleneck" and "tfrecord". Read results.md and the
    # timelines first; quote your numbers, from `measured["pipelines"][name]` (`seconds`, `epoch_seconds`,
    # `input_wait_share`, `test_accuracy`, `busy_seconds` per stage) in f-strings, or typed in.
    ### BEGIN SOLUTION
    from course import analysis  # the teacher's model answers, derived from the run's numbers

    return analysis.answers(measured)
    ### END SOLUTION


try:
    answers = answer_questions(measured)
except NotImplementedError as todo:
    answers = {}
    print(f"analysis.md: the lab's questions and your table, no answers yet "
          f"({assignment_check.not_written(todo, 'TODO 6: the answers')})")
analysis = assignment_check.analysis_markdown(
    measured, answers, missing="_Not answered yet (TODO 6)._",
    title=f"Analysis: {len(data.train_paths)} training / {len(data.test_paths)} test images{STAND_IN}, "
          f"{config.backbone} ({head} head, {trainable_parameters:,} trainable parameters), "
          f"{console.count(config.epochs, 'epoch')}, batch {config.batch_size}")
run.write_text("analysis.md", analysis)
print(analysis)

# %% [markdown]
# ## Summary

# %%
run.finish({
    "config": {"backbone": config.backbone, "weights": weights, "head": head, "epochs": config.epochs,
               "batch_size": config.batch_size, "image_size": IMAGE_SIZE, "crop_size": CROP_SIZE,
               "learning_rate": config.learning_rate, "shuffle_buffer": config.shuffle_buffer,
               "seed": config.seed, "pipelines": config.pipelines,
               "trainable_parameters": trainable_parameters, "total_parameters": int(wild_model.count_params())},
    "results": results, "tfrecords": tfrecords, "measured": measured, "answers": answers, "skipped": run.skipped,
}, {**{f"{name}_s": result["seconds"] for name, result in results.items()},
    **{f"{name}_accuracy": result["test_accuracy"] for name, result in results.items()}}, data=data)
