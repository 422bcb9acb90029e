"""The per-element Python map (``timeline.timed_map(..., in_python=True)``) holds no memory per image.

Called eagerly, with a global seed set, every random op without an op seed gets a
fresh op seed per call and TensorFlow caches a new kernel for each, forever. The
memory test iterates the map in a child process (a fresh TensorFlow, its RSS its
own) and fits the growth of its resident memory against the number of images.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from common import augment, timeline  # noqa: E402

from fakes import REPO_ROOT  # noqa: E402

CHECKPOINTS = (300, 900, 1500)  # images delivered when the RSS is read
WARMUP = 100  # images before the first reading: tracing, thread pools and allocator arenas settle
# Measured with this probe on 2 CPU cores (AMD EPYC), TF 2.21: calling the map eagerly grew
# by 186.6-186.7 KB per image (2 runs; ~35 KB per random op, five in augment.train_map);
# traced once, by 0.02-0.29 KB per image (10 runs: the Recorder's Map span per image, and
# allocator noise). 20 KB per image is 70x the noise and 9x below the leak: even one
# leaking random op (35 KB) fails.
MAX_KB_PER_IMAGE = 20

PROBE = r"""
import json, resource, sys

import numpy as np

from common import console

with console.quiet_tensorflow():
    import keras
    import tensorflow as tf

from common import augment, timeline

warmup, checkpoints = int(sys.argv[1]), [int(value) for value in sys.argv[2:]]
keras.utils.set_random_seed(0)  # the leak needs a global seed, as every lab script sets one
count = warmup + checkpoints[-1]
images = np.random.default_rng(0).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
tags = np.zeros((count, 3), dtype=np.int64)
tags[:, 2] = np.arange(count)
recorder = timeline.Recorder()
dataset = (tf.data.Dataset.from_tensor_slices((images, np.arange(count) % 10, tags))
           .map(timeline.timed_map(lambda image, label: (augment.train_map(image), label), recorder,
                                   in_python=True)))


def rss_kb():
    # Resident memory now (Linux); elsewhere the peak, which start-up may hold above a small leak.
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if sys.platform == "darwin" else 1)


readings, delivered = [], 0
for _ in dataset:
    delivered += 1
    if delivered - warmup in checkpoints:
        readings.append((delivered - warmup, rss_kb()))
print(json.dumps({"readings": readings, "map_spans": sum(span.stage == "Map" for span in recorder.spans())}))
"""


def _train_map(images, labels):
    return augment.train_map(images), labels


def _mapped(seed, images, passes):
    """``passes`` epochs of ``images`` through the in-Python map, seeded with ``seed``; and the recorder."""
    keras.utils.set_random_seed(seed)
    tags = np.stack([np.zeros(len(images)), np.zeros(len(images)), np.arange(len(images))], axis=1).astype(np.int64)
    recorder = timeline.Recorder()
    dataset = (tf.data.Dataset.from_tensor_slices((images, np.zeros(len(images), np.int64), tags))
               .map(timeline.timed_map(_train_map, recorder, in_python=True)))
    return [np.stack([image.numpy() for image, _, _ in dataset]) for _ in range(passes)], recorder


@pytest.mark.slow
def test_in_python_map_memory_does_not_grow_per_image():
    result = subprocess.run([sys.executable, "-c", PROBE, str(WARMUP), *map(str, CHECKPOINTS)], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["map_spans"] == WARMUP + CHECKPOINTS[-1]
    images, kilobytes = np.array(measured["readings"], dtype=float).T
    slope = np.polyfit(images, kilobytes, 1)[0]
    assert slope < MAX_KB_PER_IMAGE, (
        f"RSS grows by {slope:.1f} KB per image through timed_map(in_python=True): {measured['readings']}")


def test_in_python_map_is_reproducible_and_draws_anew_for_every_image_and_epoch():
    one_image = np.random.default_rng(0).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    images = np.repeat(one_image, 12, axis=0)  # the same image twelve times

    (first, second), recorder = _mapped(7, images, passes=2)
    (again, _), _ = _mapped(7, images, passes=2)
    (other, _), _ = _mapped(8, images, passes=2)

    np.testing.assert_array_equal(first, again)  # same seed, same augmentations
    assert not np.array_equal(first, other)
    assert len({image.tobytes() for image in first}) == len(images)  # a fresh draw for every image
    assert not np.array_equal(first, second)  # and for every epoch
    maps = [span for span in recorder.spans() if span.stage == "Map"]
    assert sorted(span.index for span in maps) == sorted([*range(len(images))] * 2)
