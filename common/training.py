"""The lab's training helpers: epoch timing, the epoch table, saving models whole, the run's fit callbacks.

* :class:`EpochTimer` adds each epoch's ``train_seconds`` and ``validation_seconds``
  to the logs ``fit`` hands its callbacks (so ``CSVLogger`` records them).
* :class:`RunProgress` tells a :class:`common.run.Run` which fit runs and when an
  epoch was backed up; ``run.callbacks(name)`` puts both in the right order.
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
