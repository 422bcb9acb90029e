"""
Title: How fast does the lab's first CIFAR-10 CNN train on this machine, fed which way?
Description: Times training steps of `models.cifar_cnn()` (1,756,938 parameters) for the
    lab's plain `model.fit(x / 255, y, batch_size=32)` and for the cheap alternatives
    (a tf.data pipeline from uint8 arrays with prefetch, XLA `jit_compile`, mixed
    precision, bigger batches), and prints images per second and the ratio to the lab.
Run: python benchmarks/cifar_cnn_speed.py                 (about 3 minutes on 2 cores)
     python benchmarks/cifar_cnn_speed.py --steps 100 --repeats 3

Step time does not depend on what the pixels show, so the images are random uint8
arrays of CIFAR-10's shape (nothing to download). Each configuration trains a fresh
model: the first `--warmup` steps (tracing, compiling, oneDNN kernel selection) are
left out, then `--steps` steps are timed. Configurations run round-robin `--repeats`
times and the fastest round is kept, so a burst of load from other processes
on a shared machine hurts every configuration alike rather than one of them.

Measured (AMD EPYC with AVX512-BF16, 2 cores shared with other jobs): see the table
printed by a run. Speed of one training step of the arrays model: the lab's
fit(float32 arrays, batch 32) 727-874 images/s; tf.data from uint8 + prefetch 0.96-1.09x
(same speed, a quarter of the memory); XLA jit_compile 0.6x (slower on CPU);
mixed_bfloat16 1.3-1.6x: the one cheap win, so lab03 turns it on by default where the CPU
computes bfloat16 natively. Batch 64 or 128 gives the same images/s on CPU.

What lab03_cifar_cnn.py reaches with these settings, one run of
`python lab03_cifar_cnn.py --data-dir DIR` (DIR: the JPEG export of CIFAR-10, about 1-2
points below the official pickles), 5 epochs, defaults: dtype policy mixed_bfloat16,
`--augmentation lab`, 2 CPU cores, 534 s in all. Epoch times swung 2x between epochs on
this shared machine:
  arrays model    test accuracy 0.7156  42-83 s/epoch (median 54)   600-1190 images/s (lab 0.7087)
  pipeline model  test accuracy 0.7007  21-41 s/epoch (median 39)  1230-2340 images/s (lab 0.7092)
That run's `lab` map left out the lab's contrast step (then thought to be undone by
standardisation; it is only in part). With it, as now, a later run (same command, machine
shared with other jobs, so its times are not comparable) gave 0.7156 and 0.6841. The
pipeline model's result moves by about a point between runs: pipeline-only runs without
the contrast step gave 0.6859 (bfloat16) and 0.6897 (float32). With the stronger maps it
reaches 0.6706 (`--augmentation random-crop`) and 0.6514 (`full`). bfloat16 keeps the
results within run-to-run noise: arrays model 0.7156 (bfloat16) vs 0.7290 (float32,
--no-mixed-precision; its test accuracy swung 0.53-0.73 over epochs 3-5).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras
import numpy as np
import tensorflow as tf

from common import models, training

# name: (feed, batch size, jit_compile, dtype policy)
CONFIGURATIONS = {
    "lab: fit(float32 arrays)": ("arrays", 32, False, "float32"),
    "tf.data uint8 + prefetch": ("dataset", 32, False, "float32"),
    "  + jit_compile (XLA)": ("dataset", 32, True, "float32"),
    "  + mixed_bfloat16": ("dataset", 32, False, "mixed_bfloat16"),
    "  + mixed_bfloat16, batch 64": ("dataset", 64, False, "mixed_bfloat16"),
    "  float32, batch 128": ("dataset", 128, False, "float32"),
}


class StepClock(keras.callbacks.Callback):
    """Time from the end of step ``warmup`` to the end of the last step."""

    def __init__(self, warmup: int) -> None:
        super().__init__()
        self.warmup = warmup

    def on_train_batch_end(self, batch, logs=None):
        if batch == self.warmup - 1:
            self.start = time.perf_counter()
            self.timed_steps = 0
        elif batch >= self.warmup:
            self.end = time.perf_counter()
            self.timed_steps += 1

    @property
    def seconds_per_step(self) -> float:
        return (self.end - self.start) / self.timed_steps


def seconds_per_step(feed: str, batch_size: int, jit: bool, policy: str, steps: int, warmup: int) -> float:
    """Train a fresh model for ``warmup + steps`` steps and return the mean time of the timed steps."""
    count = batch_size * (warmup + steps)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, count)
    keras.mixed_precision.set_global_policy(policy)
    model = models.cifar_cnn()  # its softmax stays float32 under mixed precision
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=jit)
    clock = StepClock(warmup)
    if feed == "arrays":  # the lab: the whole training set as float32 in [0, 1]
        model.fit(images.astype("float32") / 255.0, labels, batch_size=batch_size, epochs=1, verbose=0,
                  callbacks=[clock])
    else:
        dataset = (
            tf.data.Dataset.from_tensor_slices((images, labels))
            .shuffle(count)
            .batch(batch_size)
            .map(lambda x, y: (tf.cast(x, tf.float32) / 255.0, y), num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE)
        )
        model.fit(dataset, epochs=1, verbose=0, callbacks=[clock], shuffle=False)
    keras.mixed_precision.set_global_policy("float32")
    return clock.seconds_per_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60, help="timed steps per configuration (default 60)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed first steps (default 5)")
    parser.add_argument("--repeats", type=int, default=2, help="round-robin rounds; the fastest counts (default 2)")
    parser.add_argument("--only", nargs="*", default=None, help="run only configurations whose name contains these")
    args = parser.parse_args()

    names = [name for name in CONFIGURATIONS if not args.only or any(word in name for word in args.only)]
    if not training.cpu_has_native_bfloat16() and not tf.config.list_physical_devices("GPU"):
        print("note: this CPU has no native bfloat16: the mixed_bfloat16 rows are emulated and slow")
    best = {name: float("inf") for name in names}
    for round_number in range(args.repeats):
        for name in names:
            feed, batch_size, jit, policy = CONFIGURATIONS[name]
            seconds = seconds_per_step(feed, batch_size, jit, policy, args.steps, args.warmup)
            best[name] = min(best[name], seconds)
            print(f"round {round_number + 1}: {name.strip():32s} {seconds * 1000:7.1f} ms/step", flush=True)

    reference = CONFIGURATIONS[names[0]][1] / best[names[0]]
    print()
    print(f"{'configuration':32s} {'batch':>5} {'ms/step':>8} {'images/s':>9} {'s/epoch':>8} {'vs first':>8}")
    print("-" * 76)
    for name in names:
        batch_size = CONFIGURATIONS[name][1]
        images_per_second = batch_size / best[name]
        print(f"{name:32s} {batch_size:>5} {best[name] * 1000:>8.1f} {images_per_second:>9.0f} "
              f"{50_000 / images_per_second:>8.1f} {images_per_second / reference:>7.2f}x")
    print(f"\n{os.cpu_count()} CPU cores, TensorFlow {tf.__version__}, Keras {keras.__version__}; "
          f"s/epoch = 50,000 images at that rate (no validation)")


if __name__ == "__main__":
    main()
