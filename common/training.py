"""The lab's training helpers: epoch timing, the epoch table, saving models whole, the run's fit callbacks.

* :class:`EpochTimer` adds each epoch's ``train_seconds`` and ``validation_seconds``
  to the logs ``fit`` hands its callbacks (so ``CSVLogger`` records them).
* :class:`RunProgress` tells a :class:`common.run.Run` which fit runs and when an
  epoch was backed up; ``run.callbacks(name)`` puts both in the right order.
* :class:`RecomputeBatchNormStatistics` gives batch normalisation the statistics of
  the current weights before each evaluation, so a short run tests as it trained.
* :func:`epoch_table` and :func:`timing` turn a fit's history into the lab's numbers.
* :func:`save_model` / :func:`save_weights` never leave half a file after a crash;
  :func:`starting_weights` keeps the weights several trainings of one run start from.
* :func:`half_precision_is_fast` says where mixed precision pays off.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import keras
import numpy as np

from common.files import atomic_path


class EpochTimer(keras.callbacks.Callback):
    """Adds ``train_seconds`` and ``validation_seconds`` to every epoch's logs.

    Training time runs from the start of an epoch to the end of its last training
    step, so the validation pass that ``fit`` runs afterwards is timed apart and
    does not dilute images per second. The first epoch includes tracing and
    compiling the step function (see :func:`timing`).
    """

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = self._last_step_end = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self._last_step_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["train_seconds"] = self._last_step_end - self._epoch_start
            logs["validation_seconds"] = time.perf_counter() - self._last_step_end


class RunProgress(keras.callbacks.Callback):
    """Keeps a :class:`common.run.Run` told which fit runs, how many epochs it has, and each epoch's end."""

    def __init__(self, run, name: str) -> None:
        super().__init__()
        self.run, self.name = run, name

    def on_train_begin(self, logs=None):
        self.run.fit_started(self.name, int(self.params.get("epochs") or 0))

    def on_epoch_end(self, epoch, logs=None):
        self.run.epoch_ended()

    def on_train_end(self, logs=None):
        self.run.fit_ended(self.name)


class RecomputeBatchNormStatistics(keras.callbacks.Callback):
    """Before each evaluation, sets every ``BatchNormalization`` layer's moving mean and variance
    to the exact statistics of ``images`` under the current weights.

    In training, a batch-norm layer normalises with the batch's own statistics; at
    test time it uses moving averages (``momentum=0.99``: each step moves them 1%
    towards the batch's). Those lag behind the weights: after 60 steps each is still
    55% its starting value (mean 0, variance 1), and a model whose training accuracy
    rises can test at chance. Long runs hide the lag (the lab's 1,563 steps
    per epoch), quick runs do not. Recomputing the statistics from training images
    ("precise BN": Wu and Johnson, *Rethinking "Batch" in BatchNorm*, 2021) makes
    every epoch's test accuracy that of the weights trained so far. Training itself
    is unchanged: it never reads the moving statistics.

    Parameters
    ----------
    images : array ``(N, ...)``
        Training images (a seeded sample of ``max_images`` when there are more: for
        lab03's models a thousand images give each channel's statistics over 36,000
        values or more).
    prepare : callable, optional
        Turns the sample into what the model takes (for example a crop), once.
    batch_size : int
        Images per forward pass.
    max_images : int
    seed : int
        Chooses the sample (its own generator: the run's random sequence is untouched).
    """

    def __init__(self, images, prepare=None, batch_size: int = 250, max_images: int = 1000, seed: int = 0) -> None:
        super().__init__()
        if len(images) > max_images:
            chosen = np.sort(np.random.default_rng(seed).choice(len(images), max_images, replace=False))
            images = images[chosen]
        self.images = images if prepare is None else np.asarray(prepare(images))
        self.batch_size = batch_size

    def on_test_begin(self, logs=None):
        recompute_batch_norm_statistics(self.model, self.images, self.batch_size)


def recompute_batch_norm_statistics(model: keras.Model, images, batch_size: int = 250) -> int:
    """Set the moving mean and variance of each ``BatchNormalization`` layer of ``model`` (a flat
    ``Sequential`` or functional model with one input) to the statistics of its inputs over ``images``.

    One forward pass in training mode, as in training: each layer normalises with its
    batch's statistics, so no layer's inputs depend on the moving statistics being
    replaced. Returns the number of layers updated.
    """
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if not norms:
        return 0
    inputs_of_norms = keras.Model(model.inputs[0], [norm.input for norm in norms])  # shares the model's weights
    totals = [0.0] * len(norms)
    totals_of_squares = [0.0] * len(norms)
    counts = [0] * len(norms)
    for start in range(0, len(images), batch_size):
        outputs = inputs_of_norms(images[start:start + batch_size], training=True)
        for index, (norm, values) in enumerate(zip(norms, outputs, strict=True)):
            axis = norm.axis if isinstance(norm.axis, int) else norm.axis[0]
            values = np.asarray(values, dtype=np.float64)
            values = np.moveaxis(values, axis, -1).reshape(-1, values.shape[axis])
            totals[index] += values.sum(axis=0)
            totals_of_squares[index] += np.square(values).sum(axis=0)
            counts[index] += len(values)
    # Training mode also moved the layers' statistics a step: they are replaced now.
    for norm, total, total_of_squares, count in zip(norms, totals, totals_of_squares, counts, strict=True):
        mean = total / count
        variance = np.maximum(total_of_squares / count - np.square(mean), 0.0)
        norm.moving_mean.assign(mean.astype(norm.moving_mean.dtype))
        norm.moving_variance.assign(variance.astype(norm.moving_variance.dtype))
    return len(norms)


def timing(history: dict, images_per_epoch: int) -> dict:
    """Seconds per epoch and images per second from a history with ``train_seconds``.

    Parameters
    ----------
    history : dict of lists, as ``run.history(name)`` returns it
    images_per_epoch : int, training images one epoch sees (steps x batch size)

    Returns
    -------
    dict with ``train_seconds_per_epoch``, ``validation_seconds_per_epoch``,
    ``images_per_second_per_epoch`` (lists), and ``seconds_per_epoch`` and
    ``images_per_second``: means over the epochs after the first (which also traces
    and compiles), or the first alone when there is only one.
    """
    train = list(history.get("train_seconds", []))
    steady = train[1:] or train
    seconds = sum(steady) / len(steady) if steady else 0.0
    return {
        "train_seconds_per_epoch": [round(value, 2) for value in train],
        "validation_seconds_per_epoch": [round(value, 2) for value in history.get("validation_seconds", [])],
        "images_per_second_per_epoch": [round(images_per_epoch / value, 1) if value > 0 else 0.0 for value in train],
        "seconds_per_epoch": round(seconds, 2),
        "images_per_second": round(images_per_epoch / seconds, 1) if seconds else 0.0,
    }


def epoch_table(history: dict, images_per_epoch: int) -> str:
    """A fixed-width table, one row per epoch: losses, accuracies, seconds and images/s.

    ``history`` holds ``loss``, ``accuracy``, optionally ``val_loss`` and
    ``val_accuracy`` (the test set, in the lab) and ``train_seconds``.
    """
    header = f"{'epoch':>5} {'loss':>7} {'accuracy':>8} {'test_loss':>9} {'test_acc':>8} {'train_s':>7} {'images/s':>8}"
    rows = [header, "-" * len(header)]
    nothing = [float("nan")] * len(history.get("loss", []))
    for epoch, loss in enumerate(history.get("loss", [])):
        seconds = history.get("train_seconds", nothing)[epoch]
        rows.append(
            f"{epoch + 1:>5} {loss:>7.4f} {history['accuracy'][epoch]:>8.4f} "
            f"{history.get('val_loss', nothing)[epoch]:>9.4f} {history.get('val_accuracy', nothing)[epoch]:>8.4f} "
            f"{seconds:>7.1f} {images_per_epoch / seconds if seconds > 0 else 0:>8.0f}"
        )
    return "\n".join(rows)


def save_model(model: keras.Model, path: str | os.PathLike) -> Path:
    """``model.save(path)`` (a ``.keras`` file), atomically: no half-written model after a crash."""
    return _save_atomically(model.save, path, ".keras")


def save_weights(model: keras.Model, path: str | os.PathLike) -> Path:
    """``model.save_weights(path)`` (a ``.weights.h5`` file), atomically."""
    return _save_atomically(model.save_weights, path, ".weights.h5")


def _save_atomically(save, path: str | os.PathLike, suffix: str) -> Path:
    """Call ``save(file)`` on a temporary name, then rename it to ``path``; Keras insists on ``suffix``."""
    path = Path(path)
    with atomic_path(path) as temporary:
        staged = temporary.with_suffix(suffix)
        try:
            save(staged)
            staged.replace(temporary)
        finally:
            staged.unlink(missing_ok=True)
    return path


def starting_weights(model: keras.Model, run, name: str = "initial.weights.h5") -> Path:
    """The weights file that every training of this run starts from; returns its path.

    When ``run`` goes on from an earlier session (a resume or a replay), that
    session's file is loaded into ``model``: the parts still to train must start
    where the finished ones did. Otherwise ``model``'s weights are saved now
    (atomically). Load it before each training with ``model.load_weights(path)``.
    """
    path = run.scratch("weights") / name
    if run.resumed and path.is_file():
        model.load_weights(path)
        return path
    return save_weights(model, path)


def half_precision_is_fast() -> bool:
    """Whether mixed precision speeds training up here: a GPU with tensor cores, or a CPU with bfloat16 units.

    GPUs of compute capability 7.0 or more have tensor cores (Keras' mixed-precision
    guide); CPUs that list AVX512-BF16 or AMX-BF16 compute bfloat16 natively. Elsewhere
    half precision is emulated and slower than float32
    (``benchmarks/cifar_cnn_speed.py``).
    """
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return all(tuple(tf.config.experimental.get_device_details(gpu).get("compute_capability") or (0, 0))
                   >= (7, 0) for gpu in gpus)
    return cpu_has_native_bfloat16()


def cpu_has_native_bfloat16(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> bool:
    """True when the CPU lists AVX512-BF16 or AMX-BF16 (Linux; False where unknown)."""
    try:
        flags = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
