"""
Title: Memory of lab04's input pipelines without a model: does it grow with every image?
Description: Peak resident memory (RSS) of iterating lab04's naive pipeline (one image
    at a time, the map in Python through timeline.timed_map(in_python=True)) and its
    optimized pipeline over 1,000, 5,000 and 10,000 training images, each count in a
    fresh child process, and the slope of a straight line through the peaks of
    iterating, in KB per image. A pipeline that holds nothing per image has a slope near 0; the
    optimized one fills its cache() with ~3 KB per image (a 32x32x3 image plus its
    tag), bounded by the dataset. The global seed is set, as lab04 sets it.
Run: python benchmarks/memory_naive_pipeline.py --data-dir DIR

Without --data-dir (or $LAB_DATA_DIR) it runs on the offline stand-in (10,000 training
images), and says so. The pipelines are faithful copies of lab04_pipeline.py's
``naive_train`` and ``optimized_train`` (--cache before-map, its default), with the
same maps from common.augment, the same source functions, shuffle buffer and
tf.data options; ``--pipelines naive_source`` adds the naive pipeline without its map.
Counts are rounded down to whole batches of 64.

Measured on 2 CPU cores (AMD EPYC), 24 GB, TensorFlow 2.21 / Keras 3.15, real CIFAR-10
(the JPEG export, decoded once into the cache): `--data-dir /tmp/cifar`. "peak MB" is the
child's, as /usr/bin/time -v reports it; "iterating" its peak counted from after set-up.
Seconds are loose: the machine was shared with other jobs.

Before: timed_map(in_python=True) called ``func`` eagerly. With a global seed set, every
eager random op without an op seed gets a new op seed, and TensorFlow instantiates and
caches a new function for each (~35 KB, never freed): five per image in augment.train_map.

    pipeline      images  peak MB iterating growth MB  seconds
    naive            960      977       977       220     82.0
    naive           4992     1713      1713       957    382.0
    naive           9984     2625      2625      1869    682.3
    optimized        960      953       953        48      1.9
    optimized       4992      967       967        62      1.9
    optimized       9984      983       983        78      2.2
    slope of the peak while iterating: naive 187.1 KB/image, optimized 3.4 KB/image

After: ``func`` runs as one tf.function, traced once per input signature, inside the
same per-element tf.py_function:

    pipeline      images  peak MB iterating growth MB  seconds
    naive            960      897       803        46     10.3
    naive           4992      897       806        50     17.3
    naive           9984      897       810        53     32.4
    optimized        960      954       954        47      1.4
    optimized       4992      966       966        61      2.7
    optimized       9984      984       984        79      2.2
    slope of the peak while iterating: naive 0.8 KB/image, optimized 3.4 KB/image

What is left is by design: the naive source alone (``--pipelines naive_source``) grows
by 0.7 KB per image, the timeline Recorder's spans; the optimized pipeline's cache()
keeps every decoded image (~3 KB), up to the data set's size.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PIPELINES = ("naive", "optimized", "naive_source")
BATCH_SIZE = 64
SHUFFLE_BUFFER = 10_000  # lab04's default
BLOCK_ROWS = 1000  # lab04's


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("LAB_DATA_DIR") or None,
                        help="CIFAR-10 (archive, batches folder or image folder); default $LAB_DATA_DIR")
    parser.add_argument("--data", choices=("auto", "standin"), default="auto",
                        help="standin: the offline stand-in even with a data folder (default: auto, the "
                             "stand-in only without one)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 10_000],
                        help="training images per child process (default: 1000 5000 10000)")
    parser.add_argument("--pipelines", nargs="+", choices=PIPELINES, default=["naive", "optimized"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", nargs=2, metavar=("PIPELINE", "IMAGES"), help=argparse.SUPPRESS)
    return parser.parse_args()


def peak_rss_mb() -> float:
    """The process's peak RSS so far, as ``/usr/bin/time -v`` reports it at the end."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KB on Linux


def status_mb(field: str) -> float | None:
    """``VmRSS`` (now) or ``VmHWM`` (peak since the last reset) from /proc/self/status; None off Linux."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) / 1024 for line in status if line.startswith(field + ":"))
    except OSError:
        return None


def reset_peak() -> bool:
    """Restart the kernel's peak-RSS count (Linux 4.0+), so the peak of iterating is not start-up's."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def child(config) -> None:
    """Build one pipeline as lab04 does, iterate it over the given number of images, print one JSON line."""
    import numpy as np

    from common import console

    with console.quiet_tensorflow():
        import keras
        import tensorflow as tf

    from common import augment, datasets, timeline

    pipeline, images = config.child[0], int(config.child[1])
    keras.utils.set_random_seed(config.seed)
    batches = datasets.cifar10_batches(config.data, config.data_dir, config.seed)
    train_files = [str(path) for path in batches.train_files]
    image_spec = (tf.TensorSpec((32, 32, 3), tf.uint8), tf.TensorSpec((), tf.int64))

    # The source and map functions of lab04_pipeline.py.
    def open_examples(path):
        rows, labels = datasets.read_cifar10_batch(path)
        return list(zip(rows, labels, strict=True))

    def read_example(item):
        row, label = item
        return datasets.rows_to_images(row[np.newaxis])[0], label

    def open_blocks(path):
        rows, labels = datasets.read_cifar10_batch(path)
        return [(rows[start:start + BLOCK_ROWS], labels[start:start + BLOCK_ROWS])
                for start in range(0, len(rows), BLOCK_ROWS)]

    def read_block(item):
        rows, labels = item
        return datasets.rows_to_images(rows), labels

    def augment_train(images, labels):
        return augment.train_map(images), labels

    recorder = timeline.Recorder()
    if pipeline in ("naive", "naive_source"):  # lab04's naive_train
        naive_options = tf.data.Options()
        naive_options.experimental_optimization.apply_default_optimizations = False
        naive_options.experimental_optimization.map_and_batch_fusion = False
        naive_options.experimental_optimization.inject_prefetch = False
        dataset = (timeline.time_measured_dataset(train_files, open_examples, read_example, image_spec, recorder)
                   .shuffle(SHUFFLE_BUFFER, seed=config.seed))
        if pipeline == "naive":
            dataset = dataset.map(timeline.timed_map(augment_train, recorder, in_python=True))
        dataset = dataset.batch(BATCH_SIZE, drop_remainder=True).with_options(naive_options)
    else:  # lab04's optimized_train, --cache before-map
        source = timeline.time_measured_dataset(train_files, open_blocks, read_block, image_spec, recorder,
                                                items_are_blocks=True, interleave=True)
        dataset = (source.cache()
                   .shuffle(SHUFFLE_BUFFER, seed=config.seed)
                   .batch(BATCH_SIZE, drop_remainder=True)
                   .map(timeline.timed_map(augment_train, recorder), num_parallel_calls=tf.data.AUTOTUNE)
                   .prefetch(tf.data.AUTOTUNE))
    # TensorFlow's import and the data set up to here peak above what iterating adds, so
    # the process peak alone would hide a slope: the peak of iterating is counted apart.
    setup_peak, rss_before, counted_apart = peak_rss_mb(), status_mb("VmRSS"), reset_peak()
    start, delivered = time.perf_counter(), 0
    for batch_images, _, _ in dataset.take(images // BATCH_SIZE):
        delivered += int(batch_images.shape[0])
    seconds = time.perf_counter() - start
    rss_after, iteration_peak = status_mb("VmRSS"), status_mb("VmHWM") if counted_apart else peak_rss_mb()
    print(json.dumps({
        "pipeline": pipeline, "images": delivered, "seconds": seconds, "source": batches.source,
        # The reset restarted ru_maxrss too: the process's peak is the larger of the two.
        "process_peak_mb": max(setup_peak, iteration_peak), "setup_peak_mb": setup_peak,
        "iteration_peak_mb": iteration_peak,
        "growth_mb": None if rss_before is None else rss_after - rss_before,
    }), flush=True)


def main() -> None:
    config = parse_arguments()
    if config.child:
        child(config)
        return
    import numpy as np

    if config.data_dir is None and config.data == "auto":
        config.data = "standin"
    if config.data == "standin":
        print("No --data-dir or $LAB_DATA_DIR: measuring on the offline stand-in (10,000 generated training "
              "images), not CIFAR-10.", flush=True)
    rows = []
    for pipeline in config.pipelines:
        for size in config.sizes:
            command = [sys.executable, __file__, "--child", pipeline, str(size), "--data", config.data,
                       "--seed", str(config.seed)]
            if config.data_dir is not None:
                command += ["--data-dir", str(config.data_dir)]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                sys.exit(f"{pipeline}, {size} images: the child process failed:\n{result.stderr[-3000:]}")
            row = json.loads(result.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"  {pipeline:<13} {row['images']:>6} images: peak RSS {row['iteration_peak_mb']:.0f} MB while "
                  f"iterating, {row['process_peak_mb']:.0f} MB in all, {row['seconds']:.1f} s", flush=True)
    print(f"\ndata: {rows[0]['source']}")
    print("peak MB: of the whole child process (as /usr/bin/time -v reports it), and while iterating\n"
          "(counted from after TensorFlow's import and the pipeline's set-up); growth: RSS after\n"
          "iterating minus RSS before")
    print(f"{'pipeline':<13} {'images':>6} {'peak MB':>8} {'iterating':>9} {'growth MB':>9} {'seconds':>8}")
    for row in rows:
        growth = "-" if row["growth_mb"] is None else f"{row['growth_mb']:.0f}"
        print(f"{row['pipeline']:<13} {row['images']:>6} {row['process_peak_mb']:>8.0f} "
              f"{row['iteration_peak_mb']:>9.0f} {growth:>9} {row['seconds']:>8.1f}")
    slopes = []
    for pipeline in config.pipelines:
        points = [(row["images"], row["iteration_peak_mb"] * 1024) for row in rows if row["pipeline"] == pipeline]
        if len(points) >= 2:
            images, kilobytes = np.array(points, dtype=float).T
            slopes.append(f"{pipeline} {np.polyfit(images, kilobytes, 1)[0]:.1f} KB/image")
    if slopes:
        print("slope of the peak while iterating against images: " + ", ".join(slopes))

if __name__ == "__main__":
    main()
