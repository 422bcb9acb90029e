"""
Title: Input pipelines with tf.data, measured on a timeline
Description: The same CNN (1,068,810 parameters), the same augmentation and 2 epochs,
    fed by a naive pipeline (one image at a time through Python) and an optimized one
    (parallel interleaved reads, a vectorised parallel map, cache, prefetch). Every
    piece of work is recorded on a timeline, so the pictures show where the time goes:
    the naive trainer waits for input for much of its time, the optimized one hardly at all.
    Then three pipelines as they are written in practice: arrays in memory, files via
    `Dataset.list_files`, and `keras.utils.image_dataset_from_directory`.
Result: naive 506.9 s (input wait 43%) against optimized 299.6 s (input wait 1.2%), 1.7x;
    test accuracy 0.555 / 0.568 after 2 epochs; peak memory 1.38 GB for the whole run (15 min):
    `python lab04_pipeline.py --data-dir DIR` on the CIFAR-10 JPEG export, 2 CPU cores (AMD
    EPYC without AVX-512, where training dominates; with a faster training step the gap widens:
    a GPU, or a CPU with bfloat16 units). (The lab: 8268 s against 261 s, inflated by its sleeps.)
Run: python lab04_pipeline.py --data standin --limit 2000    (a quick look: 70-150 s on 2 busy CPU cores)
     python lab04_pipeline.py --data-dir DIR --pipelines optimized   (only that one: skip the 8-minute naive run)
"""

# %% [markdown]
# # Input Pipeline
# A training input pipeline is an ETL process: **extract** data from memory or
# storage, **transform** it on the CPU (parse, shuffle, batch, augment), **load** it
# onto the accelerator that trains the model. `tf.data` builds such pipelines:
# define a source, chain transformations (`map`, `shuffle`, `batch`, `repeat`,
# `prefetch`), iterate.
#
# ## Setup
# The knobs: which pipelines to run, where the optimized one caches, the shuffle buffer.
# Each pipeline is a part of the run: after Ctrl-C or a crash, the same command
# goes on with the first pipeline that had not finished (a pipeline is never
# resumed half-way: its timings would mean nothing across a restart).

# %% tags=["parameters"]
# In a notebook, flags come from here (on the command line, from sys.argv), e.g.:
# ARGS = "--data standin --limit 2000"
ARGS = ""

# %%
import os
import time

from common import cli, console
from common.run import Run

PIPELINES = ["naive", "optimized", "in_memory", "list_files", "image_dataset_from_directory"]
parser = cli.make_parser(__doc__, epochs=2, batch_size=64, out="outputs/lab04", dataset="cifar10")
parser.add_argument("--pipelines", nargs="+", choices=PIPELINES, default=PIPELINES, metavar="PIPELINE",
                    help=f"which pipelines to run, space-separated, from {' '.join(PIPELINES)} (default: all; "
                    "naive is the slow one)")
parser.add_argument("--cache", choices=["before-map", "after-map"], default="before-map",
                    help="where the optimized pipeline caches: before the random map (default: fresh "
                    "augmentation every epoch), or after it as the lab does (faster, but epoch 2 replays "
                    "epoch 1's crops and flips)")
parser.add_argument("--shuffle-buffer", type=cli.positive_int, default=10_000,
                    help="examples in the shuffle buffer (lab: 10000)")
parser.add_argument("--practical-batches", type=cli.positive_int, default=50,
                    help="batches to time in the 'in practical use' section (default: 50)")
config = cli.parse(parser, ARGS)  # also refuses a --limit too small for the dataset, before any work
run = Run(config, "lab04")

import matplotlib.pyplot as plt  # the libraries after the flags, so --help answers at once
import numpy as np
from matplotlib.ticker import MaxNLocator

with console.quiet_tensorflow():  # TensorFlow's start-up notices stay out of the output
    import keras
    import tensorflow as tf

from common import augment, datasets, models, plots, timeline, training
from common.errors import UserError

keras.utils.set_random_seed(config.seed)  # Python, NumPy and TensorFlow: the same run every time

# The data first, so that a wrong --data-dir or a damaged batch file fails before any work.
# With --limit N the batch files hold N training images (stratified) and a proportional
# share of the test images, in the same five-plus-one layout. Each file is read once now
# to count its rows: a damaged one fails here, clearly, not inside a tf.data thread.
batches = datasets.cifar10_batches(config.data, config.data_dir, config.seed, limit=config.limit)
rows_used = {str(path): len(datasets.read_cifar10_batch(path)[1]) for path in batches.train_files + batches.test_files}
class_names = batches.class_names
CIFAR = "the CIFAR-10 stand-in" if batches.is_standin else "CIFAR-10"  # for figure titles

# %% [markdown]
# ## tf.data basics on small arrays
# ### Construct your Dataset
# `from_tensor_slices` cuts arrays along their first axis: row *i* of `raw_data_a`
# goes with element *i* of `raw_data_b`.

# %%
n_samples = 200
raw_data_a = np.random.default_rng(config.seed).random((n_samples, 5))  # (n_samples, 5)
raw_data_b = np.arange(n_samples)  # 0 .. n_samples-1
print(raw_data_a.shape, raw_data_b.shape)
raw_dataset = tf.data.Dataset.from_tensor_slices((raw_data_a, raw_data_b))


def show(dataset, count=8, title=None):
    """Print the first ``count`` elements, one line each, as (a, b) numpy values."""
    if title:
        print(title)
    for number, (a, b) in enumerate(dataset.take(count)):
        print(f"  element {number}: a={np.round(a.numpy(), 3).tolist()}  b={b.numpy().tolist()}")


# %% [markdown]
# ### Consume elements
# A Dataset is a Python iterable: a `for` loop, or `iter` and `next`.

# %%
show(raw_dataset, title="for loop over raw_dataset:")
iterator = iter(raw_dataset)
print("next(iterator) twice:", [int(next(iterator)[1]) for _ in range(2)])
# An iterator left alive ends with the program, and deleting it waits for its tf.data
# tuning thread to wake (up to a minute): the script would hang after its last line.
del iterator

# %% [markdown]
# ### Apply transformations: map
# `Dataset.map` applies a function to every element; here each row becomes its sum
# and mean. `num_parallel_calls` lets several elements be mapped at once.

# %%


def preprocess_function(one_row_a, one_b):
    """One element in, one element out: row (5,) -> [sum, mean] (2,)."""
    return tf.stack([tf.reduce_sum(one_row_a), tf.reduce_mean(one_row_a)]), one_b


raw_dataset = raw_dataset.map(preprocess_function, num_parallel_calls=tf.data.AUTOTUNE)
show(raw_dataset, title="after map:")

# %% [markdown]
# ### shuffle
# `shuffle(buffer_size)` keeps a buffer and draws the next element from it at
# random, so each epoch sees another order.

# %%
dataset = raw_dataset.shuffle(16, seed=config.seed)
order = [int(b) for _, b in dataset.take(8)]
print("The order of the first 8 after shuffle(16), from [0, 1, ..., 7] to", order)

# %% [markdown]
# ### batch
# `batch(n)` stacks `n` consecutive elements. (Shuffling *after* batching would
# shuffle whole batches, and each batch would keep its members.)

# %%
dataset = dataset.batch(2, drop_remainder=False)
for number, (_, b) in enumerate(dataset.take(3)):
    print(f"batch {number} is combined from elements {b.numpy().tolist()}")

# %% [markdown]
# ### repeat
# `repeat(count)` concatenates `count` passes; `None` repeats forever. To act at
# the end of each epoch, loop over the dataset once per epoch instead.

# %%
dataset = dataset.repeat(2)
for epoch in range(3):
    batch_count = sizes = 0
    for _, b in dataset:
        batch_count += 1
        sizes += len(b)
    print(f"End of epoch {epoch}: {batch_count} batches with {sizes} pieces of data "
          "(repeat(2) means each epoch of this loop sees every element twice)")

# %% [markdown]
# ### prefetch
# `prefetch(buffer_size)` decouples producing from consuming: while the model
# works on batch *i*, the pipeline already prepares batch *i+1*.

# %%
dataset = dataset.prefetch(tf.data.AUTOTUNE)

# %% [markdown]
# ### repeat + batch versus batch + repeat
# `repeat` gives no signal at an epoch's end, so a `batch` after it makes batches
# that straddle epochs; `batch` first keeps a short last batch in every epoch.

# %%
figure, axes = plt.subplots(1, 2, figsize=(11, 3.2), sharey=True)
for axis, (title, ordered) in zip(axes, [
    ("repeat(3).batch(32)", raw_dataset.repeat(3).batch(32)),
    ("batch(32).repeat(3)", raw_dataset.batch(32).repeat(3)),
], strict=True):
    batch_sizes = [int(b.shape[0]) for _, b in ordered]
    axis.bar(range(len(batch_sizes)), batch_sizes)
    axis.set_title(title)
    axis.set_xlabel("batch number")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # batches are whole numbers
axes[0].set_ylabel("batch size")
figure.suptitle("Batch sizes: repeat then batch straddles epochs; batch then repeat keeps a short last batch")
run.save_figure(figure, "batch_sizes.png")

# %% [markdown]
# ### shuffle + repeat versus repeat + shuffle
# A `shuffle` before `repeat` empties its buffer before the next epoch starts, so
# every element of epoch 1 comes before any of epoch 2; `repeat` then `shuffle`
# mixes the epochs' boundaries. The plot shows each batch's mean element id.

# %%
counter = tf.data.Dataset.from_tensor_slices(raw_data_b)
shuffle_repeat = [batch.numpy().mean() for batch in counter.shuffle(100, seed=config.seed).repeat(2).batch(10)]
repeat_shuffle = [batch.numpy().mean() for batch in counter.repeat(2).shuffle(100, seed=config.seed).batch(10)]
figure, axis = plt.subplots(figsize=(8, 3.5))
axis.plot(shuffle_repeat, marker="o", label="shuffle().repeat()")
axis.plot(repeat_shuffle, marker="o", label="repeat().shuffle()")
axis.axvline(len(shuffle_repeat) / 2 - 0.5, color="gray", linestyle=":", label="epoch boundary")
axis.set_xlabel("batch number")
axis.set_ylabel("mean element id in the batch")
axis.xaxis.set_major_locator(MaxNLocator(integer=True))
axis.legend()
axis.set_title("shuffle then repeat keeps each epoch apart; repeat then shuffle mixes them")
run.save_figure(figure, "shuffle_repeat.png")

# %% [markdown]
# ## Optimization for input pipeline
# ### Dataset with time: CIFAR-10 through a time-measured source
# The lab reads the pickled CIFAR-10 batches by hand. Here each batch file is one
# *source*: opening it (unpickling 10,000 images) is an **Open** span, turning
# rows into images is a **Read** span, and the augmentation is a **Map** span; the
# training loop adds **Wait** (trainer idle, waiting for the next batch), **Train**,
# **Test** and **Epoch** spans. `common/timeline.py` records every span on the
# Python side under a lock, so parallel reads and maps need no `time.sleep` (the
# lab sleeps 0.05 s around every step "to avoid concurrency issues", which inflates
# its 8268 s naive run).

# %%
print(f"CIFAR-10 batches from {batches.source}: {[path.name for path in batches.train_files]} "
      f"+ {batches.test_files[0].name}")
IMAGE_SPEC = (tf.TensorSpec((32, 32, 3), tf.uint8), tf.TensorSpec((), tf.int64))
train_files = [str(path) for path in batches.train_files]
test_files = [str(path) for path in batches.test_files]


def open_examples(path):
    """Unpickle one batch file; its items are (row (3072,), label) pairs, one per image."""
    rows, labels = datasets.read_cifar10_batch(path)
    return list(zip(rows, labels, strict=True))


def read_example(item):
    """One channel-major row (3072,) -> one (32, 32, 3) uint8 image, and its label."""
    row, label = item
    return datasets.rows_to_images(row[np.newaxis])[0], label


BLOCK_ROWS = 1000


def open_blocks(path):
    """Unpickle one batch file; its items are blocks of BLOCK_ROWS rows, read at once."""
    rows, labels = datasets.read_cifar10_batch(path)
    return [(rows[start:start + BLOCK_ROWS], labels[start:start + BLOCK_ROWS])
            for start in range(0, len(rows), BLOCK_ROWS)]


def read_block(item):
    """A block of rows (n, 3072) -> images (n, 32, 32, 3) in one vectorised reshape."""
    rows, labels = item
    return datasets.rows_to_images(rows), labels


# %% [markdown]
# Every element is `(image, label, tag)`; the tag `(source, epoch, index)` says which
# file, which pass over it and which example, and rides along through shuffle,
# batch and cache. The spans go straight to the recorder. Two examples:

# %%
peek_recorder = timeline.Recorder()
peek = timeline.time_measured_dataset(train_files[:1], open_examples, read_example, IMAGE_SPEC, peek_recorder)
for image, label, tag in peek.take(2):
    print(f"tag (source, epoch, index) = {tag.numpy().tolist()}, image {image.shape} {image.dtype}, "
          f"label {int(label)} ({class_names[int(label)]})")
for span in peek_recorder.spans():
    print(f"  {span.stage:<5} source {span.source} epoch {span.epoch} index {span.index:>2}: "
          f"{1000 * span.duration:.3f} ms")

# %% [markdown]
# ### Map function with time: the maps
# Both pipelines use the same maps from `common/augment.py` (random 24x24 crop, flip,
# brightness, contrast, per-image standardisation; centre crop for testing), which
# take one image or a batch, so the two runs train exactly the same thing. They fix
# two lab bugs: a brightness step that per-image standardisation undid (here the
# shift is up to 63/255 and clipped to [0, 1], so it changes the image), and a test
# map that resizes instead of cropping (see the module's docstring).

# %%


def augment_train(images, labels):
    return augment.train_map(images), labels


def augment_test(images, labels):
    return augment.test_map(images), labels


# %% [markdown]
# ### A first timeline: ten examples, training simulated
# The lab's "test" and "test_batch" timelines, before any model: ten examples go
# through the source and the map one at a time, each followed by a pretend training
# step of 0.1 s (the lab's `time.sleep(0.1)`; it stands in for a model, nothing else
# here sleeps); then three batches of 4, mapped a batch at a time. Every bar carries
# its example indexes (its batch number for Train), so you can follow one example
# from Read through Map to Train.

# %%
DEMO_TRAIN_SECONDS = 0.1


def simulate_training(dataset, recorder, steps):
    """Take ``steps`` elements of ``dataset``; after each, record a pretend Train span of 0.1 s."""
    for step, (_, _, tags) in enumerate(dataset.take(steps)):
        start = timeline.now()
        time.sleep(DEMO_TRAIN_SECONDS)
        recorder.record_tags("Train", start, timeline.now() - start, tags.numpy(), epoch=0, index=step)


for demo_name, demo_batch_size, demo_steps in (("test", None, 10), ("test_batch", 4, 3)):
    demo_recorder = timeline.Recorder()
    demo = timeline.time_measured_dataset(train_files[:1], open_examples, read_example, IMAGE_SPEC, demo_recorder)
    if demo_batch_size:
        demo = demo.batch(demo_batch_size)
    demo = demo.map(timeline.timed_map(augment_train, demo_recorder))
    simulate_training(demo, demo_recorder, demo_steps)
    what = f"{demo_steps} batches of {demo_batch_size}" if demo_batch_size else f"{demo_steps} examples"
    timeline.draw_timeline(demo_recorder, f"{demo_name}: {what} of {CIFAR}, training simulated",
                           annotate=True, path=run.path(f"timeline_{demo_name}.png"))

# %% [markdown]
# ## The naive pipeline
# The lab's: read one example at a time, map one example at a time in Python
# (`tf.py_function`, the lab's `map_decorator`), batch 64. Nothing runs in
# parallel and nothing is prepared ahead. TensorFlow would quietly rewrite it
# (fuse map and batch into one asynchronous step, inject a prefetch), so we switch
# its default optimisations off to measure the naive pipeline as written.

# %%
naive_options = timeline.as_written()  # tf.data's automatic rewrites off
naive_recorder = timeline.Recorder()
naive_train = (
    timeline.time_measured_dataset(train_files, open_examples, read_example, IMAGE_SPEC, naive_recorder)
    .shuffle(config.shuffle_buffer, seed=config.seed)
    .map(timeline.timed_map(augment_train, naive_recorder, in_python=True))
    .batch(config.batch_size, drop_remainder=True)
    .with_options(naive_options)
)
naive_test = (
    timeline.time_measured_dataset(test_files, open_examples, read_example, IMAGE_SPEC, naive_recorder)
    .map(timeline.timed_map(augment_test, naive_recorder, in_python=True))
    .batch(config.batch_size)  # every test image counts (the lab drops the last 16)
    .with_options(naive_options)
)

# %% [markdown]
# ## The optimized pipeline
# 1. **interleave**: read the five files at once (the lab interleaves `range(1)`,
#    a single source, so it never does). The readers are Python generators, so
#    unpickling holds Python's global lock: the Open and Read bars overlap on the
#    timeline, but they do not run on two cores at once;
# 2. read whole blocks of 1,000 rows at once instead of one row at a time;
# 3. **batch before map**: the map works on 64 images at once (vectorised), in
#    graph code, with `num_parallel_calls` batches at a time;
# 4. **cache**: keep the decoded images in memory after the first epoch, *before*
#    the random map, then shuffle, so every epoch gets new crops, flips and order;
# 5. **prefetch**: prepare the next batches while the model trains.
#
# The lab caches *after* the random augmentation (`--cache after-map` reproduces it),
# so epoch 2 replays epoch 1's crops, flips and batch order. That makes Open, Read
# and Map vanish from epoch 2, but it also skips the augmentation work that the
# naive pipeline still does every epoch, which flatters the speed-up, and it trains
# on the same augmented images again. With the cache before the map (the default),
# Open and Read vanish from epoch 2 and Map runs in every epoch.

# %%
optimized_recorder = timeline.Recorder()
train_source = timeline.time_measured_dataset(
    train_files, open_blocks, read_block, IMAGE_SPEC, optimized_recorder, items_are_blocks=True,
    interleave=True)
test_source = timeline.time_measured_dataset(
    test_files, open_blocks, read_block, IMAGE_SPEC, optimized_recorder, items_are_blocks=True,
    interleave=True)
timed_augment_train = timeline.timed_map(augment_train, optimized_recorder)
if config.cache == "before-map":  # the default: the random map runs every epoch
    optimized_train = (
        train_source.cache()
        .shuffle(config.shuffle_buffer, seed=config.seed)
        .batch(config.batch_size, drop_remainder=True)
        .map(timed_augment_train, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
else:  # after-map, the lab's order: epoch 2 replays epoch 1's augmented batches
    optimized_train = (
        train_source.shuffle(config.shuffle_buffer, seed=config.seed)
        .batch(config.batch_size, drop_remainder=True)
        .map(timed_augment_train, num_parallel_calls=tf.data.AUTOTUNE)
        .cache()
        .prefetch(tf.data.AUTOTUNE)
    )
optimized_test = (
    test_source.batch(config.batch_size)
    .map(timeline.timed_map(augment_test, optimized_recorder), num_parallel_calls=tf.data.AUTOTUNE)
    .cache()  # the test map is deterministic, so caching its output is always right
    .prefetch(tf.data.AUTOTUNE)
)

# %% [markdown]
# ## Train: the CNN again, with time
# The lab's second CIFAR-10 CNN, its initial weights saved once so both pipelines
# start from the same point (a resumed run reuses the interrupted run's). Each run
# gets a fresh Adam optimizer (the lab reuses one, so its second run inherits the
# first run's moment estimates), and the loss is computed on the softmax
# probabilities the model outputs (the lab's `from_logits=True` on a softmax
# output applies softmax twice).
#
# A run's time is its epochs' time. Reported apart: deleting each epoch's finished
# iterators (the Teardown spans: deleting one waits for its tf.data tuning thread to
# wake, up to about a minute, so it runs beside the next epoch and only the last
# epoch's is waited for), and tracing the step functions once before epoch 1.
# The three add up to the call's time.

# %%
model = models.cifar_cnn_pipeline()
model.summary()
initial_weights = training.starting_weights(model, run)
train_steps = sum(rows_used[path] for path in train_files) // config.batch_size  # drop_remainder=True
test_steps = -(-sum(rows_used[path] for path in test_files) // config.batch_size)


def train_with_timeline(name, train_dataset, test_dataset, recorder):
    """Train from the initial weights, draw the timeline, and record the pipeline as finished."""
    console.banner(f"{name} pipeline: {console.count(config.epochs, 'epoch')}")
    model.load_weights(initial_weights)
    start = time.perf_counter()
    history = timeline.timelined_benchmark(
        model, train_dataset, test_dataset, epochs=config.epochs, recorder=recorder,
        train_steps=train_steps, test_steps=test_steps)
    benchmark_seconds = time.perf_counter() - start
    seconds = sum(row["seconds"] for row in history)
    teardown_seconds = sum(row["teardown_seconds"] for row in history)
    tracing_seconds = benchmark_seconds - seconds - teardown_seconds
    print(f"Execution time: {seconds:.1f} s ({console.count(config.epochs, 'epoch')})\n"
          f"  + Teardown (freeing the last epoch's finished iterators): {teardown_seconds:.1f} s\n"
          f"  + tracing the steps before epoch 1, and bookkeeping: {tracing_seconds:.1f} s\n"
          f"  = {benchmark_seconds:.1f} s in timelined_benchmark")
    timeline.draw_timeline(recorder, f"{name} pipeline on {CIFAR}: {seconds:.1f} s", annotate=True,
                           path=run.path(f"timeline_{name}.png"))
    return run.complete(name, {"seconds": seconds, "teardown_seconds": teardown_seconds,
                               "tracing_seconds": tracing_seconds, "epochs": history,
                               "timeline": timeline.summarize(recorder.spans())})


results = {}
for name, train_dataset, test_dataset, recorder in [
    ("naive", naive_train, naive_test, naive_recorder),
    ("optimized", optimized_train, optimized_test, optimized_recorder),
]:
    if name not in config.pipelines:
        run.skip(name, "not in --pipelines")
        continue
    results[name] = run.finished(name) or train_with_timeline(name, train_dataset, test_dataset, recorder)

# %% [markdown]
# ## Timelines
# `timeline_naive.png` and `timeline_optimized.png`: one row per stage, colours by
# the epoch in which the work ran. Naive: Read and Map bars fill the time between
# Train steps, in every epoch. Optimized: Open and Read appear in epoch 1 only,
# overlapping Train; from epoch 2 on the cache serves the decoded images and only
# the batched Map runs (with `--cache after-map`, Map vanishes too). After each
# epoch a Teardown bar shows TensorFlow deleting that epoch's finished iterators.
#
# ## The comparison

# %%
table, text = timeline.compare(results)
print(text, end="")
run.write_text("comparison.txt", text)
for row in table:
    print(f"{row['pipeline']}: Open/Read/Map recorded after epoch 1: {row['pipeline_stages_after_epoch_1']}")
speedup = None
if len(results) == 2:
    speedup = results["naive"]["seconds"] / results["optimized"]["seconds"]
    print(f"optimized is {speedup:.1f}x faster in total")

# %% [markdown]
# ## What made the difference
# The naive trainer spends much of its time waiting (43% on 2 CPU cores): every image
# goes through Python on its own (`tf.py_function`), so the CPU pays per-image
# overhead instead of working on pixels, and none of it overlaps with training. The optimized
# pipeline runs the same augmentation as a few graph operations per batch of 64, in
# parallel threads, prepared by `prefetch` while the model trains, and from epoch 2
# on the decoded images come from the cache, so the trainer hardly waits at all.
#
# The result depends on the machine: with a GPU the training step gets much
# shorter and the input pipeline matters even more; decoding JPEG or PNG files
# (the assignment) costs more than reading pickled arrays, which widens the gap.

# %% [markdown]
# ## In practical use (a simple demo)
# Without the timing tags, a pipeline is a few lines. Three common sources:
# arrays already in memory, a folder of image files read with
# `tf.data.Dataset.list_files`, and `keras.utils.image_dataset_from_directory`
# with preprocessing layers, Keras 3's replacement for the removed
# `ImageDataGenerator`. The two file pipelines need a folder of `<class>/<image>`
# files: the data folder itself when `--data-dir` is one, else PNGs written once
# from the test batch into the data cache.

# %%
BUFFER_SIZE, BATCH_SIZE = config.shuffle_buffer, config.batch_size


def class_folders(folder):
    """Names of the visible subfolders of ``folder``: one per class in an image folder."""
    return {child.name for child in folder.iterdir() if child.is_dir() and not child.name.startswith(".")}


def image_folder_for_demo():
    """A folder of ``<class>/<image>`` files: the data folder, or PNGs of the test batch (written once)."""
    candidate = None if config.data_dir is None else config.data_dir / "train"
    if candidate is not None and candidate.is_dir():
        found = class_folders(candidate)
        if found == set(class_names):
            return candidate
        print(f"{candidate} does not hold exactly one folder per CIFAR-10 class (unknown: "
              f"{sorted(found - set(class_names))}, missing: {sorted(set(class_names) - found)}); "
              "writing a folder of PNGs instead")
    return datasets.cifar10_png_folder(test_files[0], class_names, per_class=20 if config.limit else 100)


def time_batches(dataset, name, grid_title=None):
    """Time up to --practical-batches batches of a finished pipeline, as the part ``name``.

    Prints shapes and images per second; with ``grid_title``, draws the first batch.
    A dataset without a single batch (fewer images than --batch-size where full
    batches are kept) gets ``images_per_second`` None. Skipped when not in --pipelines.
    """
    if name not in config.pipelines:
        return run.skip(name, "not in --pipelines")
    finished = run.finished(name)
    if finished is not None:
        return finished
    start, images_seen, first = time.perf_counter(), 0, None
    for images, labels in dataset.take(config.practical_batches):
        first = first if first is not None else (images, labels)
        images_seen += int(images.shape[0])
    seconds = time.perf_counter() - start
    if first is None:
        print(f"{name:<30} no batch: fewer images than --batch-size {config.batch_size}")
        return run.complete(name, {"images_per_second": None})
    print(f"{name:<30} batch {tuple(first[0].shape)} {first[0].dtype.name}, labels {tuple(first[1].shape)}: "
          f"{images_seen} images in {seconds:.2f} s = {images_seen / seconds:,.0f} images/s")
    if grid_title:
        count = min(16, len(first[0]))
        titles = [class_names[int(label)] for label in first[1][:count]]
        run.save_figure(plots.image_grid(first[0][:count].numpy(), titles, title=f"{grid_title}, {CIFAR}"),
                        "practical_batch.png")
    return run.complete(name, {"images_per_second": images_seen / seconds})


image_folder = image_folder_for_demo()
print("image folder:", image_folder)
practical = {}

# %%
# 1. Files already opened and read into memory: slice, shuffle, batch, map batch-wise, prefetch.
memory_rows, memory_labels = datasets.read_cifar10_batch(test_files[0])
in_memory = (
    tf.data.Dataset.from_tensor_slices((datasets.rows_to_images(memory_rows), memory_labels))
    .shuffle(BUFFER_SIZE, seed=config.seed)
    .batch(BATCH_SIZE, drop_remainder=True)
    .map(augment_train, num_parallel_calls=tf.data.AUTOTUNE)
    .prefetch(tf.data.AUTOTUNE)
)
practical["in_memory"] = time_batches(in_memory, "in_memory")

# %%
# 2. tf.data.Dataset.list_files: file names in, decode in parallel, then as above.
#    The label is the name of the file's folder, looked up in a table; a folder
#    that is not a class is an error, here before the pipeline starts. (The lab
#    batches the *paths* and maps a batch-wise image map over them, which cannot
#    decode files: decoding is per file, so it comes before batch.)
label_to_index = {name: index for index, name in enumerate(class_names)}
if class_folders(image_folder) != set(label_to_index):
    raise UserError(f"{image_folder} must hold one folder per CIFAR-10 class, {class_names}; it has "
                    f"{sorted(class_folders(image_folder))}")
label_table = tf.lookup.StaticHashTable(
    tf.lookup.KeyValueTensorInitializer(list(label_to_index), list(label_to_index.values()),
                                        key_dtype=tf.string, value_dtype=tf.int64),
    default_value=-1)


def load_image_file(path):
    """Path of ``<class>/<name>.png|jpg`` -> (32, 32, 3) uint8 image, int64 label."""
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    image = tf.image.resize_with_crop_or_pad(image, 32, 32)  # a no-op for CIFAR-sized images
    label = label_table.lookup(tf.strings.split(path, os.sep)[-2])
    # Never label an unknown folder as class 0 (the checked folder cannot have one; this is the backstop).
    with tf.control_dependencies([tf.debugging.assert_non_negative(
            label, message="image folder is not a CIFAR-10 class name")]):
        return image, tf.identity(label)


listed = (
    tf.data.Dataset.list_files(str(image_folder / "*" / "*"), shuffle=True, seed=config.seed)
    .map(load_image_file, num_parallel_calls=tf.data.AUTOTUNE)
    .batch(BATCH_SIZE, drop_remainder=True)
    .map(augment_train, num_parallel_calls=tf.data.AUTOTUNE)
    .prefetch(tf.data.AUTOTUNE)
)
practical["list_files"] = time_batches(listed, "list_files")

# %%
# 3. Keras 3: image_dataset_from_directory + preprocessing layers replace
#    ImageDataGenerator(rescale=1./255, rotation_range=..., horizontal_flip=...).
from_directory = keras.utils.image_dataset_from_directory(
    image_folder, labels="inferred", label_mode="int", class_names=class_names,
    image_size=(32, 32), batch_size=BATCH_SIZE, shuffle=True, seed=config.seed)
augmentation = keras.Sequential([
    keras.layers.Rescaling(1.0 / 255),
    keras.layers.RandomRotation(20 / 360, seed=config.seed),
    keras.layers.RandomFlip("horizontal", seed=config.seed),
    keras.layers.RandomCrop(24, 24, seed=config.seed),
])
from_directory = (
    from_directory.map(lambda images, labels: (augmentation(images, training=True), labels),
                       num_parallel_calls=tf.data.AUTOTUNE)
    .prefetch(tf.data.AUTOTUNE)
)
practical["image_dataset_from_directory"] = time_batches(
    from_directory, "image_dataset_from_directory", grid_title="image_dataset_from_directory + preprocessing layers")

# %% [markdown]
# ## Summary

# %%
metrics = {
    "data": batches.describe() | {"train_rows": sum(rows_used[path] for path in train_files),
                                  "test_rows": sum(rows_used[path] for path in test_files)},
    "settings": {"epochs": config.epochs, "batch_size": config.batch_size,
                 "shuffle_buffer": config.shuffle_buffer, "cache": config.cache, "pipelines": config.pipelines},
    "comparison": table,
    "speedup": speedup,
    "runs": results,  # per pipeline: seconds, teardown_seconds, tracing_seconds, epochs, timeline
    "practical_images_per_second": {name: part["images_per_second"] for name, part in practical.items()
                                    if part is not None},  # None: not in --pipelines
}
summary = {}
for row in table:
    summary[f"{row['pipeline']}_s"] = row["total_s"]
    summary[f"{row['pipeline']}_accuracy"] = row["test_accuracy"]
    summary[f"{row['pipeline']}_input_wait"] = row["input_wait_share"]
if speedup is not None:
    summary["speedup"] = speedup
run.finish(metrics, summary, data=batches)
