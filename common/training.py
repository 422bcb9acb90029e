"""Training helpers the lab scripts share: epoch timing, devices, strategies, precision.

* :class:`EpochTimer` records seconds per epoch and images per second during
  ``model.fit`` (training only, validation timed apart).
* :func:`split_cpu` turns the CPU into N logical devices, so multi-device code
  (``--strategy mirrored``) can be tried and tested on a laptop.
* :func:`distribution_strategy` builds a ``tf.distribute`` strategy by name.
* :func:`set_precision` picks float32 or mixed precision (float16 on GPUs,
  bfloat16 on CPUs that compute it natively).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import keras
import tensorflow as tf

from common.errors import UserError

STRATEGIES = ("default", "one-device", "mirrored", "multi-worker")
PRECISIONS = ("auto", "float32", "mixed")


class EpochTimer(keras.callbacks.Callback):
    """Seconds per epoch and images per second, measured during ``fit``.

    Training time runs from the start of an epoch to the end of its last
    training step, so the validation pass that ``fit`` runs afterwards is timed
    separately and does not dilute images per second. The first epoch includes
    tracing and compiling the step function; the summary figures skip it when
    there is more than one epoch (see :meth:`summary`).

    Parameters
    ----------
    images_per_epoch : int
        Training images one epoch sees (steps x global batch size).

    Attributes
    ----------
    train_seconds, validation_seconds : list of float, one per epoch
    """

    def __init__(self, images_per_epoch: int) -> None:
        super().__init__()
        self.images_per_epoch = int(images_per_epoch)
        self.train_seconds: list[float] = []
        self.validation_seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()
        self._last_step_end = self._epoch_start

    def on_train_batch_end(self, batch, logs=None):
        self._last_step_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        self.train_seconds.append(self._last_step_end - self._epoch_start)
        self.validation_seconds.append(now - self._last_step_end)

    @property
    def images_per_second(self) -> list[float]:
        """Training images per second, one value per epoch."""
        return [self.images_per_epoch / seconds if seconds > 0 else 0.0 for seconds in self.train_seconds]

    def summary(self) -> dict:
        """Per-epoch lists and steady-state means (the first epoch left out when there are more).

        Returns
        -------
        dict with ``train_seconds_per_epoch``, ``validation_seconds_per_epoch``,
        ``images_per_second_per_epoch`` (lists), ``seconds_per_epoch`` and
        ``images_per_second`` (means over the steady epochs).
        """
        steady = slice(1, None) if len(self.train_seconds) > 1 else slice(None)
        train = self.train_seconds[steady]
        seconds = sum(train) / len(train) if train else 0.0
        return {
            "train_seconds_per_epoch": [round(value, 2) for value in self.train_seconds],
            "validation_seconds_per_epoch": [round(value, 2) for value in self.validation_seconds],
            "images_per_second_per_epoch": [round(value, 1) for value in self.images_per_second],
            "seconds_per_epoch": round(seconds, 2),
            "images_per_second": round(self.images_per_epoch / seconds, 1) if seconds else 0.0,
        }


def split_cpu(devices: int) -> None:
    """Present the CPU as ``devices`` logical devices (``/cpu:0`` ... ``/cpu:N-1``).

    Lets ``MirroredStrategy`` run its multi-replica code path without GPUs: each
    replica gets a share of the same cores, so it teaches and tests, it does not
    speed anything up. Must run before TensorFlow executes its first operation.

    Raises
    ------
    UserError
        TensorFlow has already initialised its devices.
    """
    if devices < 1:
        raise UserError(f"--cpu-devices {devices}: expected 1 or more")
    if devices == 1:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(devices)]
        )
    except RuntimeError as error:
        raise UserError(f"cannot split the CPU into {devices} devices ({error}): call split_cpu "
                        "before TensorFlow runs anything") from None


def distribution_strategy(name: str) -> tf.distribute.Strategy:
    """A ``tf.distribute`` strategy by name.

    Parameters
    ----------
    name : {"default", "one-device", "mirrored", "multi-worker"}
        * default: no distribution (TensorFlow's placement, one replica);
        * one-device: everything on the first GPU, else the CPU;
        * mirrored: one replica per local GPU (or per logical CPU device when
          there are no GPUs, see :func:`split_cpu`), gradients summed across them;
        * multi-worker: one replica per GPU on every machine listed in the
          ``TF_CONFIG`` environment variable (each machine runs the same command
          with its own ``task.index``).

    Returns
    -------
    tf.distribute.Strategy
        Its ``num_replicas_in_sync`` is the factor between the per-replica and
        the global batch size.
    """
    if name not in STRATEGIES:
        raise UserError(f"--strategy {name!r}: expected one of {', '.join(STRATEGIES)}")
    gpus = tf.config.list_logical_devices("GPU")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one-device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        devices = [device.name for device in gpus or tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if "TF_CONFIG" not in os.environ:
        print("note: --strategy multi-worker without TF_CONFIG runs as a single worker", flush=True)
    return tf.distribute.MultiWorkerMirroredStrategy()


def strategy_devices(strategy: tf.distribute.Strategy) -> list[str]:
    """The devices ``strategy`` runs replicas on (TensorFlow's choice for the default strategy)."""
    try:
        return list(strategy.extended.worker_devices)
    except RuntimeError:  # the default strategy has no fixed device list
        gpus = tf.config.list_logical_devices("GPU")
        return [(gpus or tf.config.list_logical_devices("CPU"))[0].name]


def evaluation_batch_size(examples: int, replicas: int, per_replica: int = 500) -> int:
    """A global evaluation batch size that Keras 3 can split across ``replicas``.

    Any batch size gives the same test numbers; big ones are faster. With
    several replicas, Keras 3.15 under ``tf.distribute`` fails in two cases that a
    small test set (``--limit``) runs into: a first batch that splits unevenly
    (``TensorFlowTrainer._maybe_symbolic_build`` averages it over the replicas:
    "Inputs to operation AddN ... must have the same size"), and a last batch
    with fewer images than replicas, which leaves a replica an empty batch that
    batch normalisation rejects. So the batch is a multiple of ``replicas`` and
    the remainder is either 0 or at least ``replicas``.

    Parameters
    ----------
    examples : int, the number of test images
    replicas : int, ``strategy.num_replicas_in_sync``
    per_replica : int

    Returns
    -------
    int, the global batch size
    """
    batch = per_replica * replicas
    if replicas == 1 or examples <= batch and examples % replicas == 0:
        return min(batch, max(1, examples))
    batch = min(batch, examples // replicas * replicas)
    while batch > replicas and 0 < examples % batch < replicas:
        batch -= replicas
    return max(batch, replicas)


def set_precision(precision: str) -> str:
    """Set Keras' global dtype policy and return its name.

    Parameters
    ----------
    precision : {"auto", "float32", "mixed"}
        * float32: everything in float32 (the lab);
        * mixed: float16 compute on a GPU (float32 weights, loss scaling),
          bfloat16 compute on a CPU;
        * auto: mixed on GPUs with tensor cores (compute capability 7.0 or
          more, as Keras' mixed-precision guide advises) or on a CPU with native
          bfloat16 instructions (AVX512-BF16 or AMX), where it is faster;
          float32 elsewhere, where half precision is emulated or slower.

    Notes
    -----
    Build models after this call. Keep a model's last layer in float32
    (:func:`float32_output`) so the softmax and the loss see float32 numbers.
    """
    if precision not in PRECISIONS:
        raise UserError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    gpus = tf.config.list_physical_devices("GPU")
    has_gpu = bool(gpus)
    if precision == "auto":
        fast_half_precision = gpus_have_tensor_cores(gpus) if has_gpu else cpu_has_native_bfloat16()
        precision = "mixed" if fast_half_precision else "float32"
    policy = "float32" if precision == "float32" else ("mixed_float16" if has_gpu else "mixed_bfloat16")
    keras.mixed_precision.set_global_policy(policy)
    return policy


def float32_output(model: keras.Model) -> keras.Model:
    """Run ``model``'s last layer in float32 under a mixed policy (no effect under float32).

    Keras' mixed-precision guide keeps the output softmax in float32: its
    probabilities and the cross-entropy's logarithm are where half precision
    loses the most.
    """
    model.layers[-1].dtype_policy = keras.DTypePolicy("float32")
    return model


def epoch_table(history: dict, timer: EpochTimer) -> str:
    """A fixed-width table, one row per epoch: losses, accuracies, seconds and images/s.

    Parameters
    ----------
    history : a Keras ``History.history`` dict (``loss``, ``accuracy``, optional ``val_*``)
    timer : the :class:`EpochTimer` that ran in the same ``fit``
    """
    header = f"{'epoch':>5} {'loss':>7} {'accuracy':>8} {'test_loss':>9} {'test_acc':>8} {'train_s':>7} {'images/s':>8}"
    rows = [header, "-" * len(header)]
    for epoch, loss in enumerate(history["loss"]):
        validation_loss = history.get("val_loss", [float("nan")] * (epoch + 1))[epoch]
        validation_accuracy = history.get("val_accuracy", [float("nan")] * (epoch + 1))[epoch]
        rows.append(
            f"{epoch + 1:>5} {loss:>7.4f} {history['accuracy'][epoch]:>8.4f} {validation_loss:>9.4f} "
            f"{validation_accuracy:>8.4f} {timer.train_seconds[epoch]:>7.1f} {timer.images_per_second[epoch]:>8.0f}"
        )
    return "\n".join(rows)


def is_chief() -> bool:
    """Whether this process should write outputs: True except on a multi-worker run's other workers.

    ``TF_CONFIG`` names the chief either as a task of type ``chief`` or, when the
    cluster has none, as worker 0.
    """
    import json

    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = config.get("task", {})
    if not task or task.get("type") == "chief":
        return True
    return task.get("type") == "worker" and task.get("index", 0) == 0 and "chief" not in config.get("cluster", {})


def save_model(model: keras.Model, path: str | os.PathLike) -> Path:
    """``model.save(path)`` (a ``.keras`` file), atomically: no half-written model after a crash."""
    from common.report import atomic_path

    path = Path(path)
    with atomic_path(path) as temporary:
        staged = temporary.with_suffix(".keras")  # Keras insists on the suffix
        try:
            model.save(staged)
            staged.replace(temporary)
        finally:
            staged.unlink(missing_ok=True)
    return path


def gpus_have_tensor_cores(gpus) -> bool:
    """True when every GPU reports compute capability 7.0 or more (tensor cores: fast float16)."""
    for gpu in gpus:
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        if capability is None or tuple(capability) < (7, 0):
            return False
    return True


def cpu_has_native_bfloat16(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> bool:
    """True when the CPU lists AVX512-BF16 or AMX-BF16 (Linux; False where unknown)."""
    try:
        flags = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


# ---------------------------------------------------------------------------
# Resuming model.fit after Ctrl-C, kill -9 or a crash.
# ---------------------------------------------------------------------------

class FitHistory:
    """What :func:`fit_resumable` returns: the history of every epoch, resumed or not.

    Attributes
    ----------
    history : dict of str to list of float
        ``{"loss": [...], "accuracy": [...], "val_loss": [...], ...}``, one value
        per epoch from epoch 1, as ``keras.callbacks.History.history``.
    epoch : list of int
        Epoch indices 0..epochs-1.
    resumed_from : int
        Epochs restored from the backup instead of trained in this process (0
        for a fresh fit).
    """

    def __init__(self, history: dict, resumed_from: int) -> None:
        self.history = history
        self.epoch = list(range(len(next(iter(history.values()), []))))
        self.resumed_from = resumed_from

    @property
    def epochs_trained(self) -> int:
        """Epochs computed in this process."""
        return len(self.epoch) - self.resumed_from


class _EpochLog(keras.callbacks.Callback):
    """Writes every finished epoch's logs (and the timer's seconds) to a JSON file, atomically."""

    def __init__(self, path: Path, timer: EpochTimer | None) -> None:
        super().__init__()
        self.path = path
        self.timer = timer
        self.epochs = _read_epoch_log(path)

    def on_epoch_end(self, epoch, logs=None):
        from common.report import write_json

        record = {key: float(value) for key, value in (logs or {}).items()}
        if self.timer is not None and self.timer.train_seconds:
            record["_train_seconds"] = self.timer.train_seconds[-1]
            record["_validation_seconds"] = self.timer.validation_seconds[-1]
        self.epochs[str(epoch)] = record
        write_json(self.path, self.epochs)


def _read_epoch_log(path: Path) -> dict:
    import json

    try:
        epochs = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return epochs if isinstance(epochs, dict) else {}


def fit_resumable(model: keras.Model, *args, backup_dir: str | os.PathLike, epochs: int,
                  timer: EpochTimer | None = None, callbacks=(), **kwargs) -> FitHistory:
    """``model.fit(*args, epochs=epochs, ...)`` that goes on from the last finished epoch.

    Keras's ``BackupAndRestore`` keeps the weights, the optimizer and the epoch
    counter in ``backup_dir`` after each epoch (``double_checkpoint=True``: its
    writes are not atomic, so the previous backup stays until the new one is
    whole). Run again after Ctrl-C, ``kill -9`` or a crash, the same call restores
    them and trains only the epochs left; an epoch that was cut short starts again
    from its first batch. ``fit``'s own history would hold only the new epochs, so
    every epoch's logs are also kept in ``backup_dir/epochs.json`` and the returned
    history covers the whole run. ``timer`` (an :class:`EpochTimer`), if given, is
    refilled the same way, so its lists cover every epoch too.

    The backup is deleted when the fit completes, so a finished fit starts fresh
    next time; the caller decides (see ``report.Run``) whether to call it again.

    Parameters
    ----------
    model : keras.Model
        A built, compiled model.
    backup_dir : path
        A folder of this fit's own (``run.backup_dir("cnn")``).
    epochs : int
        Total epochs, counting those already done before an interruption.
    *args, **kwargs
        Passed to ``model.fit`` (data, ``batch_size``, ``validation_data``, ...).
    """
    backup_dir = Path(backup_dir)
    log = _EpochLog(backup_dir / "epochs.json", timer)
    backup = keras.callbacks.BackupAndRestore(str(backup_dir / "backup"), double_checkpoint=True)
    extra = [timer] if timer is not None else []
    model.fit(*args, epochs=epochs, callbacks=[*callbacks, *extra, log, backup], **kwargs)
    done = [log.epochs[str(epoch)] for epoch in range(epochs) if str(epoch) in log.epochs]
    resumed_from = epochs - (len(timer.train_seconds) if timer is not None else _trained_now(model, epochs))
    history: dict[str, list[float]] = {}
    for record in done:
        for key, value in record.items():
            if not key.startswith("_"):
                history.setdefault(key, []).append(value)
    if timer is not None:
        timer.train_seconds = [record.get("_train_seconds", 0.0) for record in done]
        timer.validation_seconds = [record.get("_validation_seconds", 0.0) for record in done]
    return FitHistory(history, resumed_from=max(resumed_from, 0))


def _trained_now(model: keras.Model, epochs: int) -> int:
    """Epochs this process trained: fit's own History starts at the restored epoch."""
    history = getattr(model, "history", None)
    return len(history.epoch) if history is not None else epochs
