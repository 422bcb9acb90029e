"""
Title: TFRecord conversion and reading speed
Description: How fast tfrecord_tools converts an image folder (1 and 2 workers) and how
fast load() reads it back, against the same files read one by one with tf.data.
Run: LAB_DATA_DIR=../shared/data python benchmarks/tfrecord_speed.py
     python benchmarks/tfrecord_speed.py --data-dir DIR --photos 2000 [--fuzz 500]

Two folders, one run:

* real CIFAR-10: 60,000 JPEGs of 32x32, from ``--data-dir`` or ``$LAB_DATA_DIR`` (a
  folder with ``train/`` and ``test/``, one with ``cifar10/`` inside, or one holding
  ``cifar10-jpeg.tar.gz``, which is extracted to a temporary folder). Skipped with
  a message when absent.
* photos: ``--photos`` JPEGs of 300-800 px (smooth random colour fields, quality
  90, 10 classes), generated into a temporary folder by this script.

Conversion is timed end to end (it includes finding, sniffing, decoding, hashing,
splitting, writing and syncing the shards and the sidecar), once per worker
count, into a fresh folder each time. CIFAR-10's ``train/`` and ``test/``
folders are kept as the splits they are (50,000/10,000); only the generated
photos, which have no split folders, are split 80/20. The "CPU s" column adds
the CPU time of the parent and of its worker processes: on a machine shared with other jobs it shows
the work done even when the wall clock is slowed by others. A per-image table
then says where the time goes inside one worker.

Reading is timed after one warm-up pass (the files are then in the page cache,
and tf.data's functions are traced): decode + resize to the model's input
(32x32 for CIFAR, 224x224 for the photos), batches of 256, no cache, no shuffle,
in the same process, one pipeline after the other, ``--repeats`` passes each
(median and best reported). ``load()`` turns tf.data's autotuner off (on 2 cores
it left a core idle in about 4 passes out of 10; see ``tfrecord_tools/read.py``),
so the loose files and the per-record reader are timed with it off too.

The photos are also written with ``--max-side 300`` (the assignment's size) and
read by ``load()`` with the same pipeline after the records (resize to 224x224,
batches of 256): the last reading row. A last table damages 500 JPEGs (1-3
random bytes changed in the entropy-coded data) and counts what each decode
check rejects.

Measured 2026-12-01 on a 2-CPU machine shared with other jobs (load average 5-7;
an earlier run of the version before the strict check and --max-side, at load
0.6-2.3, is given for comparison). Command
``python benchmarks/tfrecord_speed.py --data-dir DIR --photos 2000``::

    conversion            workers  images  wall s   img/s  CPU s img/CPU-s    (before: img/CPU-s)
    CIFAR-10 (32 px)            1  60,000    8.79   6,827   3.34    17,938    (15,069)
    CIFAR-10 (32 px)            2  60,000    7.84   7,653   3.77    15,935    (14,228)
    photos (300-800 px)         1   2,000    6.12     327   2.21       906    (911)
    photos (300-800 px)         2   2,000    6.47     309   2.47       809    (852)
    photos -> max 300 px        1   2,000   18.89     106   9.86       203
    photos -> max 300 px        2   2,000   15.57     128  10.18       196

    (wall seconds are those of a loaded machine; before, at load 1-2, CIFAR with 2 workers took
    2.31 s, 26,027 images/s. Compare the CPU columns.)
    The strict check costs less CPU than the Pillow check it replaced (one process, best of 3,
    CPU time: CIFAR 11.7 instead of 24.1 us per image, photos 904 instead of 970 us).
    --max-side costs ~5 ms of CPU per 300-800 px photo, most of it Lanczos resampling.

    reading the train split (median of 5 passes, images/s)     after            before (load 1-2)
    CIFAR-10 (32 px)     loose JPEG files, tf.data          15,677  1.00x      38,786  1.00x
    CIFAR-10 (32 px)     loose JPEG files, autotune off     14,611  0.93x      31,415  0.81x
    CIFAR-10 (32 px)     TFRecord, per-record map           18,743  1.20x      24,909  0.64x
    CIFAR-10 (32 px)     TFRecord, per-record, autotune off 20,157  1.29x      25,124  0.65x
    CIFAR-10 (32 px)     TFRecord, tfrecord_tools.load      37,395  2.39x      90,537  2.33x
    photos (300-800 px)  loose JPEG files, tf.data             627  1.00x       1,263  1.00x
    photos (300-800 px)  loose JPEG files, autotune off      1,068  1.70x       1,925  1.52x
    photos (300-800 px)  TFRecord, per-record map              623  0.99x       1,260  1.00x
    photos (300-800 px)  TFRecord, per-record, autotune off  1,198  1.91x       1,273  1.01x
    photos (300-800 px)  TFRecord, tfrecord_tools.load         522  0.83x       1,814  1.44x
    photos (300-800 px)  TFRecord --max-side 300, load       1,695  2.71x           -

    A second run of the photos alone (``--photos 2000 --fuzz 0``, load 3-5): loose files
    624 (1.00x), autotune off 1,173 (1.88x), load() 1,053 (1.69x), --max-side 300 2,309
    (3.70x; best passes 3,380 against 1,242 and 1,337). Other runs: 4.20x (photos alone),
    2.21x (the whole benchmark at load 7-8), 4.39x (200 photos, one pass). Against the
    faster loose row (autotune off) the --max-side records are read at 1.6-2.0x: decoding
    a 300 px JPEG is ~4x cheaper than a 300-800 px one, but the resize to 224x224 and
    tf.data's per-image work stay.

    The same command again on a quiet machine (load 0.3-2.3), the figures to trust:
    conversion, 2 workers: CIFAR 30,013 images/s, photos 1,602, photos -> max 300 px 400;
    reading: CIFAR load() 89,163 images/s (3.33x the loose files); photos: loose 1,264
    (1.00x), autotune off 1,917 (1.52x), load() 1,798 (1.42x), --max-side 300 records
    5,010 (3.96x; 2.61x against the loose files with the autotuner off).

    decode check, 500 CIFAR JPEGs with 1-3 bytes changed in their entropy-coded data
    Pillow (the check before)    rejects    3 of 500 (0.6%)
    tfrecord_tools (strict)      rejects  220 of 500 (44.0%)
    tf.io.decode_jpeg            rejects    4 of 500 (0.8%)

Before this version (2026-11-25, quiet machine): conversion 15,300-15,400 images/s
for CIFAR with 2 workers; load() 2.7-2.8x the loose files on CIFAR. Conversion
is limited by libjpeg, not by Python; for small images of one size load() parses
a batch of records at once and decodes it in one graph loop; large photos are
decode-bound, so every reader of them runs at about the same rate unless the
records hold smaller images (--max-side). Timings on a shared machine are noisy:
compare ratios from one run.
"""

import argparse
import contextlib
import hashlib
import io
import os
import resource
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's notices would bury the tables

import numpy as np
from PIL import Image

import tfrecord_tools
from tfrecord_tools import encode, record_io, scan

# %% Knobs
config = {
    "photos": 2000,  # generated photo-like JPEGs
    "photo_min_px": 300,  # shortest/longest side range of the generated photos
    "photo_max_px": 800,
    "workers": (1, 2),  # conversion worker counts to compare
    "batch_size": 256,  # reading batch size
    "repeats": 5,  # timed reading passes per pipeline (median and best are reported)
    "breakdown_files": 2000,  # files timed one by one for the per-image breakdown
    "max_side": 300,  # the photos are also written with --max-side 300 (the assignment's size)
    "fuzz_files": 500,  # JPEGs with 1-3 changed bytes in their entropy data, for the decode-check table
    "seed": 0,
}


def parse_arguments():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--data-dir", default=os.environ.get("LAB_DATA_DIR"),
                        help="CIFAR-10 JPEG folder, its parent, or the folder with cifar10-jpeg.tar.gz "
                             "(default $LAB_DATA_DIR)")
    parser.add_argument("--photos", type=int, default=config["photos"], help="generated photos (0: none)")
    parser.add_argument("--repeats", type=int, default=config["repeats"])
    parser.add_argument("--fuzz", type=int, default=config["fuzz_files"],
                        help="JPEGs to damage for the decode-check table (0: none)")
    parser.add_argument("--keep", metavar="DIR", help="keep the temporary folders under DIR")
    return parser.parse_args()


# %% Data


def find_cifar(data_dir, scratch):
    """The CIFAR-10 JPEG folder (with train/ and test/), extracting the tarball if needed."""
    if not data_dir:
        return None
    root = Path(data_dir)
    for candidate in (root, root / "cifar10", root / "cifar10-jpeg"):
        if (candidate / "train").is_dir() and (candidate / "test").is_dir():
            return candidate
    archive = root / "cifar10-jpeg.tar.gz"
    if archive.is_file():
        target = scratch / "cifar10_extracted"
        print(f"extracting {archive} to {target} ...", flush=True)
        with tarfile.open(archive) as tar:
            tar.extractall(target, filter="data")
        for candidate in [target, *sorted(target.iterdir())]:
            if (candidate / "train").is_dir():
                return candidate
    return None


def make_photos(folder, count, seed):
    """``count`` photo-like JPEGs of 300-800 px in 10 class folders; returns folder."""
    rng = np.random.default_rng(seed)
    for index in range(count):
        width, height = rng.integers(config["photo_min_px"], config["photo_max_px"] + 1, size=2)
        # Low-frequency colour noise, upsampled: compresses like a photo, not like noise.
        coarse = rng.integers(0, 256, (int(height) // 32 + 2, int(width) // 32 + 2, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((int(width), int(height)), Image.BICUBIC)
        fine = rng.normal(0, 6, (int(height), int(width), 3))
        pixels = np.clip(np.asarray(image, dtype=np.float32) + fine, 0, 255).astype(np.uint8)
        path = folder / f"class_{index % 10}" / f"photo_{index:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path, quality=90)
    return folder


# %% Measuring


def cpu_seconds():
    """CPU time of this process plus its finished children (the worker processes)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def convert(source, out, workers, max_side=None):
    shutil.rmtree(out, ignore_errors=True)
    cpu_before = cpu_seconds()
    summary = tfrecord_tools.write_dataset(source, out, workers=workers, test_fraction=0.2, seed=config["seed"],
                                           max_side=max_side)
    summary["cpu_seconds"] = cpu_seconds() - cpu_before
    return summary


def per_image_breakdown(source):
    """Microseconds per image for each step a worker does, on the first files."""
    _, _, candidates, _ = scan.find_files(source)
    sample = candidates[: config["breakdown_files"]]
    timings = dict.fromkeys(("open + read", "sniff + decode check", "SHA-256", "Example + framing + CRC"), 0.0)
    for path, relative, class_name, _ in sample:
        started = time.perf_counter()
        with open(path, "rb") as handle:
            data = handle.read()
        read_done = time.perf_counter()
        checked = encode.check_image(data)  # includes its own SHA-256: subtracted below
        check_done = time.perf_counter()
        digest = hashlib.sha256(data).hexdigest()
        hash_done = time.perf_counter()
        encoded = encode.stored_jpeg_bytes(data) if checked["reencode"] else data
        record_io.frame_record(record_io.serialize_example({
            "image/encoded": encoded, "image/format": b"jpeg", "image/height": checked["height"],
            "image/width": checked["width"], "image/channels": checked["channels"], "image/class/label": 0,
            "image/class/text": class_name, "image/filename": relative, "image/sha256": digest,
            "image/source_format": checked["source_format"], "image/reencoded": 0,
        }))
        frame_done = time.perf_counter()
        timings["open + read"] += read_done - started
        timings["sniff + decode check"] += (check_done - read_done) - (hash_done - check_done)
        timings["SHA-256"] += 2 * (hash_done - check_done)  # once in the check, once when writing
        timings["Example + framing + CRC"] += frame_done - hash_done
    timings["open + read"] *= 2  # every file is read twice: to check it, and to write it
    mean_bytes = sum(os.path.getsize(path) for path, *_ in sample) / len(sample)
    return {name: seconds / len(sample) * 1e6 for name, seconds in timings.items()}, mean_bytes


def fuzz_decode_check(source, count, seed):
    """How many JPEGs with 1-3 bytes changed in their entropy-coded data each check rejects."""
    from PIL import Image

    _, _, candidates, _ = scan.find_files(source)
    rng = np.random.default_rng(seed)
    counts = {"Pillow (the check before)": 0, "tfrecord_tools (strict)": 0, "tf.io.decode_jpeg": 0}
    import tensorflow as tf

    with _stderr_silenced():  # libjpeg prints a warning for every damaged file it decodes anyway
        tried, counts = _fuzz(candidates, count, rng, counts, tf, Image, encode)
    return tried, counts


@contextlib.contextmanager
def _stderr_silenced():
    """File descriptor 2 to /dev/null (C libraries write there directly), restored afterwards."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "wb") as null:
        os.dup2(null.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _fuzz(candidates, count, rng, counts, tf, Image, encode):
    tried = 0
    for path, *_ in candidates:
        if tried == count:
            break
        data = bytearray(Path(path).read_bytes())
        start = data.find(b"\xff\xda")
        if start < 0:
            continue
        start += 2 + int.from_bytes(data[start + 2 : start + 4], "big")
        end = len(data) - 2  # the end-of-image marker
        if end - start < 8:
            continue
        for position in rng.choice(np.arange(start, end), size=int(rng.integers(1, 4)), replace=False):
            data[position] = (data[position] + int(rng.integers(1, 256))) % 256  # always a different value
        damaged = bytes(data)
        tried += 1
        try:
            Image.open(io.BytesIO(damaged)).load()
        except Exception:
            counts["Pillow (the check before)"] += 1
        try:
            encode.check_image(damaged)
        except encode.ImageCheckError:
            counts["tfrecord_tools (strict)"] += 1
        try:
            tf.io.decode_jpeg(damaged, channels=3)
        except tf.errors.InvalidArgumentError:
            counts["tf.io.decode_jpeg"] += 1
    return tried, counts


def reading_pipelines(tf, source, out, image_size, resized_out=None):
    """name -> dataset factory; each yields (images, labels) batches of the train split."""
    autotune = tf.data.AUTOTUNE
    batch_size = config["batch_size"]
    sidecar = tfrecord_tools.read_sidecar(out)
    # The loose files of the same train split, in the same class order.
    filenames = []
    for shard in tfrecord_tools.shard_files(out, "train"):
        for _, _, record in record_io.iter_records(Path(shard).read_bytes(), check_crc=False):
            features = record_io.parse_example_bytes(record)
            filenames.append((str(Path(source) / features["image/filename"][0].decode()),
                              features["image/class/label"][0]))
    assert len(filenames) == sidecar["splits"]["train"]["images"]

    def loose_files():
        dataset = tf.data.Dataset.from_tensor_slices(
            ([path for path, _ in filenames], [label for _, label in filenames])
        )

        def read(path, label):
            image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
            return tf.cast(tf.round(tf.image.resize(image, image_size)), tf.uint8), label

        return dataset.map(read, num_parallel_calls=autotune).batch(batch_size).prefetch(autotune)

    def plain_tfrecord():
        description = {name: tfrecord_tools.FEATURE_DESCRIPTION[name]
                       for name in ("image/encoded", "image/class/label")}

        def parse(record):
            features = tf.io.parse_single_example(record, description)
            image = tf.io.decode_jpeg(features["image/encoded"], channels=3)
            return tf.cast(tf.round(tf.image.resize(image, image_size)), tf.uint8), features["image/class/label"]

        dataset = tf.data.TFRecordDataset(tfrecord_tools.shard_files(out, "train"), num_parallel_reads=autotune)
        return dataset.map(parse, num_parallel_calls=autotune).batch(batch_size).prefetch(autotune)

    def without_autotune(make_dataset):
        def make():
            options = tf.data.Options()
            options.autotune.enabled = False
            return make_dataset().with_options(options)
        return make

    def load(folder=out):
        return tfrecord_tools.load(folder, "train", batch_size=batch_size, image_size=image_size, shuffle=False)

    # load() switches tf.data's autotuner off (see tfrecord_tools/read.py); the
    # other pipelines are timed both ways, so the comparison is fair either way.
    pipelines = {"loose JPEG files, tf.data": loose_files,
                 "loose JPEG files, autotune off": without_autotune(loose_files),
                 "TFRecord, per-record map": plain_tfrecord,
                 "TFRecord, per-record, autotune off": without_autotune(plain_tfrecord),
                 "TFRecord, tfrecord_tools.load": load}
    if resized_out is not None:
        # The same pipeline after the records (resize to image_size, batch), on records
        # stored at most --max-side px a side: less JPEG to decode.
        pipelines[f"TFRecord --max-side {config['max_side']}, load"] = lambda: load(resized_out)
    return pipelines


def time_reading(dataset_factory):
    """(median, best) images per second over ``config["repeats"]`` passes after a warm-up pass."""
    dataset = dataset_factory()
    for _ in dataset:  # warm-up: page cache, tracing
        pass
    rates = []
    for _ in range(config["repeats"]):
        count = 0
        started = time.perf_counter()
        for images, _ in dataset:
            count += int(images.shape[0])
        rates.append(count / (time.perf_counter() - started))
    return statistics.median(rates), max(rates)


# %% Run


def main():
    arguments = parse_arguments()
    config["photos"], config["repeats"] = arguments.photos, arguments.repeats
    scratch = Path(arguments.keep or tempfile.mkdtemp(prefix="tfrecord_speed_"))
    scratch.mkdir(parents=True, exist_ok=True)
    folders = {}
    cifar = find_cifar(arguments.data_dir, scratch)
    if cifar is None:
        print(f"skipping CIFAR-10: no JPEG folder found (--data-dir / LAB_DATA_DIR is {arguments.data_dir!r})")
    else:
        folders["CIFAR-10 (32 px)"] = (cifar, (32, 32))
    if config["photos"]:
        print(f"generating {config['photos']} photos of {config['photo_min_px']}-{config['photo_max_px']} px ...",
              flush=True)
        folders["photos (300-800 px)"] = (make_photos(scratch / "photos", config["photos"], config["seed"]),
                                          (224, 224))
    if not folders:
        print("nothing to measure")
        return

    print(f"\nmachine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"crc32c: {record_io.CRC32C_IMPLEMENTATION}; Python {sys.version.split()[0]}")
    print("\n== Conversion (write, end to end) ==")
    header = (f"{'folder':<20} {'workers':>7} {'images':>7} {'MB':>6} {'wall s':>7} {'img/s':>7} "
              f"{'CPU s':>6} {'img/CPU-s':>9} {'start':>6} {'check':>6} {'plan':>6} {'write':>6} {'finish':>6}")
    print(header)
    print("-" * len(header))
    outputs, resized_outputs = {}, {}
    runs = [(name, source, workers, None) for name, (source, _) in folders.items() for workers in config["workers"]]
    if "photos (300-800 px)" in folders:
        runs += [("photos (300-800 px)", folders["photos (300-800 px)"][0], workers, config["max_side"])
                 for workers in config["workers"]]
    for name, source, workers, max_side in runs:
        out = scratch / f"out_{name.split()[0]}_{workers}{f'_max{max_side}' if max_side else ''}"
        summary = convert(source, out, workers, max_side)
        if max_side:
            resized_outputs[name] = out
            name = f"photos -> max {max_side} px"
        phases = summary["phase_seconds"]
        images = summary["totals"]["images"]
        print(f"{name:<20} {workers:>7} {images:>7,} {summary['totals']['bytes'] / 1e6:>6.1f} "
              f"{summary['seconds']:>7.2f} {summary['images_per_second']:>7,.0f} "
              f"{summary['cpu_seconds']:>6.2f} {images / summary['cpu_seconds']:>9,.0f} "
              + " ".join(f"{phases[phase]:>6.2f}" for phase in ("start_workers", "check", "plan", "write",
                                                                 "sidecar")), flush=True)
        if not max_side:
            outputs[name] = out
    print("(phases in wall seconds: start = output checks + starting the worker processes; check = find, "
          "sniff, decode, hash; finish = stopping workers + sidecar)")

    print("\n== Where the time goes inside a worker (microseconds per image, one process) ==")
    header = f"{'folder':<20} {'KB/img':>7}" + "".join(f" {step:>24}" for step in
                                                       ("open + read (x2)", "sniff + decode check",
                                                        "SHA-256 (x2)", "Example + framing + CRC"))
    print(header)
    print("-" * len(header))
    for name, (source, _) in folders.items():
        timings, mean_bytes = per_image_breakdown(source)
        print(f"{name:<20} {mean_bytes / 1e3:>7.1f}" + "".join(f" {value:>24.1f}" for value in timings.values()),
              flush=True)

    print("\n== Reading the train split: decode + resize, batches of 256 ==")
    import tensorflow as tf

    print(f"(median and best of {config['repeats']} passes; 'vs loose' compares medians with the first row)")
    header = f"{'folder':<20} {'pipeline':<36} {'median img/s':>12} {'best':>9} {'vs loose':>9}"
    print(header)
    print("-" * len(header))
    for name, (source, image_size) in folders.items():
        pipelines = reading_pipelines(tf, source, outputs[name], image_size, resized_outputs.get(name))
        baseline = None
        for pipeline_name, factory in pipelines.items():
            median, best = time_reading(factory)
            baseline = baseline or median
            print(f"{name:<20} {pipeline_name:<36} {median:>12,.0f} {best:>9,.0f} {median / baseline:>8.2f}x",
                  flush=True)
    if arguments.fuzz:
        name, (source, _) = next(iter(folders.items()))
        tried, counts = fuzz_decode_check(source, arguments.fuzz, config["seed"])
        print(f"\n== Decode check: {tried} JPEGs of {name} with 1-3 bytes changed in their entropy-coded data ==")
        for checker, rejected in counts.items():
            print(f"{checker:<28} rejects {rejected:>4} of {tried} ({rejected / tried:.1%})")
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    if not arguments.keep:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
