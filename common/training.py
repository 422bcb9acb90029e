"""Training helpers the lab scripts share: epoch timing, devices, strategies, precision, resuming.

* :func:`setup` makes the strategy and the dtype policy in one call, in the order
  TensorFlow needs (returns a :class:`Setup`).
* :class:`EpochTimer` records seconds per epoch and images per second during
  ``model.fit`` (training only, validation timed apart).
* :func:`split_cpu` turns the CPU into N logical devices, so multi-device code
  (``--strategy mirrored``) can be tried and tested on a laptop.
* :func:`distribution_strategy` builds a ``tf.distribute`` strategy by name.
* :func:`set_precision` picks float32 or mixed precision (float16 on GPUs,
  bfloat16 on CPUs that compute it natively).
* :func:`fit_resumable` is ``model.fit`` that goes on after Ctrl-C, ``kill -9``
  or a crash; for a model built under ``MultiWorkerMirroredStrategy`` (which
  Keras 3's ``fit`` cannot train) it runs :func:`fit_loop`, a plain TensorFlow
  loop with the same history, timings and resume.
* :func:`predict_classes` and :func:`evaluate_accuracy` cover the whole dataset
  under every strategy.
* :func:`starting_weights` keeps the weights several trainings of one run start
  from (the interrupted run's, on a resume).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import keras
import numpy as np
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
    if name == "multi-worker":
        # First, before anything lists or initialises devices: collective ops can only
        # be configured at program start-up.
        if "TF_CONFIG" not in os.environ:
            print("note: --strategy multi-worker without TF_CONFIG runs as a single worker", flush=True)
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one-device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        devices = [device.name for device in gpus or tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)


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
    return _save_atomically(model.save, path, ".keras")


def save_weights(model: keras.Model, path: str | os.PathLike) -> Path:
    """``model.save_weights(path)`` (a ``.weights.h5`` file), atomically."""
    return _save_atomically(model.save_weights, path, ".weights.h5")


def _save_atomically(save, path: str | os.PathLike, suffix: str) -> Path:
    """Call ``save(file)`` on a temporary name, then rename it to ``path``; Keras insists on ``suffix``."""
    from common.report import atomic_path

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

    When ``run`` resumes an interrupted run, the interrupted run's file is loaded into
    ``model``: the parts still to train must start where the finished ones did.
    Otherwise ``model``'s weights are saved now (under a temporary name, then renamed,
    so a kill never leaves half a file). Load it before each training with
    ``model.load_weights(path)``.
    """
    path = run.path(name)
    if run.resumed_parts and path.is_file():
        model.load_weights(path)
        return path
    return save_weights(model, path)


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


def _history_of_every_epoch(epoch_log: dict, epochs: int, timer: EpochTimer | None, *,
                            resumed_from: int) -> FitHistory:
    """The :class:`FitHistory` of the epochs in ``epoch_log`` (``{"0": {"loss": ..., "_train_seconds": ...}}``),
    refilling ``timer`` with their seconds, so both cover the epochs before a resume too."""
    done = [epoch_log[str(epoch)] for epoch in range(epochs) if str(epoch) in epoch_log]
    history: dict[str, list[float]] = {}
    for record in done:
        for key, value in record.items():
            if not key.startswith("_"):
                history.setdefault(key, []).append(value)
    if timer is not None:
        timer.train_seconds = [record.get("_train_seconds", 0.0) for record in done]
        timer.validation_seconds = [record.get("_validation_seconds", 0.0) for record in done]
    return FitHistory(history, resumed_from=resumed_from)


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

    When the fit completes, the backup is replaced by the trained weights
    (``backup_dir/trained.weights.h5``): called again before ``backup_dir`` is
    removed (an interruption while the caller predicted or saved), the same call
    loads them and trains nothing. ``report.Run`` removes ``backup_dir`` when the
    run finishes, and decides whether to call it again at all.

    A model built under ``MultiWorkerMirroredStrategy`` trains with
    :func:`fit_loop` instead (Keras 3's ``fit`` cannot): the first positional
    argument is then the training dataset, ``validation_data`` and ``verbose``
    are passed on, and ``callbacks`` and the other ``fit`` arguments are not used.

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
    if uses_multi_worker(model):
        return fit_loop(model, args[0], epochs=epochs, checkpoint_dir=backup_dir, timer=timer,
                        validation_data=kwargs.get("validation_data"), verbose=kwargs.get("verbose", 2))
    backup_dir = Path(backup_dir)
    log = _EpochLog(backup_dir / "epochs.json", timer)
    # BackupAndRestore deletes its backup when fit ends: keep the trained weights until the
    # caller's part is done (report.Run removes backup_dir), so that an interruption after
    # the last epoch (while predicting or saving) does not train everything again.
    trained = backup_dir / "trained.weights.h5"
    if trained.is_file() and all(str(epoch) in log.epochs for epoch in range(epochs)):
        if getattr(model, "optimizer", None) is not None and not model.optimizer.built:
            with model.distribute_strategy.scope():  # so that its state is read back too
                model.optimizer.build(model.trainable_variables)
        model.load_weights(trained)
        print(f"every epoch ({epochs}) was trained before the interruption: weights read back from {trained}",
              flush=True)
        resumed_from = epochs
    else:
        backup = keras.callbacks.BackupAndRestore(str(backup_dir / "backup"), double_checkpoint=True)
        extra = [timer] if timer is not None else []
        model.fit(*args, epochs=epochs, callbacks=[*callbacks, *extra, log, backup], **kwargs)
        resumed_from = epochs - (len(timer.train_seconds) if timer is not None else _trained_now(model, epochs))
        save_weights(model, trained)
    return _history_of_every_epoch(log.epochs, epochs, timer, resumed_from=max(resumed_from, 0))


def _trained_now(model: keras.Model, epochs: int) -> int:
    """Epochs this process trained: fit's own History starts at the restored epoch."""
    history = getattr(model, "history", None)
    return len(history.epoch) if history is not None else epochs


# ---------------------------------------------------------------------------
# The strategy and precision setup, in one call.
# ---------------------------------------------------------------------------

class Setup:
    """What :func:`setup` chose: the strategy, its replicas and the dtype policy.

    Attributes
    ----------
    strategy : tf.distribute.Strategy
    replicas : int
        ``strategy.num_replicas_in_sync``: global batch = per-replica batch x replicas.
    dtype_policy : str
        Keras' global dtype policy (``float32``, ``mixed_float16`` or ``mixed_bfloat16``).
    devices : list of str
        The devices the replicas run on (this worker's, under multi-worker).
    workers : int
        Processes that train together (1 except under multi-worker).
    """

    def __init__(self, strategy, dtype_policy: str) -> None:
        self.strategy = strategy
        self.replicas = strategy.num_replicas_in_sync
        self.dtype_policy = dtype_policy
        self.devices = strategy_devices(strategy)
        self.workers = _cluster_workers() if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) else 1

    @property
    def multi_worker(self) -> bool:
        return isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy)

    def finished(self, run, part: str) -> dict | None:
        """``run.finished(part)``, agreed by every worker.

        Under multi-worker, a kill can fall between the moments two workers
        finish a part, and a worker that skipped the part while another trained
        it would wait for the other forever. So a part counts as finished only
        when every worker finished it; otherwise every worker runs it again,
        from its checkpoints (nothing is trained twice). Elsewhere this is just
        ``run.finished(part)``.
        """
        result = run.finished(part)
        if not self.multi_worker or self.replicas == 1:
            return result
        finished_here = tf.constant([1 if result is not None else 0], tf.int64)

        def here():
            return finished_here

        @tf.function
        def everyone():
            return self.strategy.gather(self.strategy.run(here), axis=0)

        if int(everyone().numpy().min()) == 1:
            return result
        if result is not None:
            print(f"{part}: not finished on every worker: running it again from its checkpoints", flush=True)
            run.current_part = part
        return None

    def describe(self) -> str:
        workers = f" in {self.workers} worker(s)" if self.multi_worker else ""
        return (f"{self.replicas} replica(s){workers} on {', '.join(self.devices)}; "
                f"dtype policy {self.dtype_policy}")


def setup(strategy: str = "default", *, cpu_devices: int = 1, precision: str = "auto",
          seed: int | None = None) -> Setup:
    """Devices, ``tf.distribute`` strategy and dtype policy for a run, in the order TensorFlow needs.

    1. ``MultiWorkerMirroredStrategy`` first, if asked for: collective ops must be
       configured before anything lists or initialises TensorFlow's devices
       ("Collective ops must be configured at program startup").
    2. Otherwise the CPU split into ``cpu_devices`` logical devices
       (:func:`split_cpu`), then the strategy (:func:`distribution_strategy`).
    3. The dtype policy (:func:`set_precision`); build models after this call.
    4. TensorFlow's seed, if ``seed`` is given.

    Parameters
    ----------
    strategy : {"default", "one-device", "mirrored", "multi-worker"}
    cpu_devices : int
        Logical CPU devices (``--cpu-devices``); not with multi-worker, whose
        workers each train on their own GPUs or CPU.
    precision : {"auto", "float32", "mixed"}, or a bool / None as from
        ``--mixed-precision`` / ``--no-mixed-precision`` (None: auto)
    seed : int, optional

    Returns
    -------
    Setup
    """
    if precision is None or isinstance(precision, bool):
        precision = {None: "auto", True: "mixed", False: "float32"}[precision]
    if strategy == "multi-worker":
        if cpu_devices > 1:
            raise UserError("--cpu-devices with --strategy multi-worker: each worker trains on its own "
                            "GPUs (or its CPU); try --strategy mirrored --cpu-devices N on one machine")
        chosen = distribution_strategy(strategy)
    else:
        split_cpu(cpu_devices)
        chosen = distribution_strategy(strategy)
    policy = set_precision(precision)
    if seed is not None:
        keras.utils.set_random_seed(seed)
    return Setup(chosen, policy)


def _cluster_workers() -> int:
    import json

    cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})
    return max(1, len(cluster.get("worker", [])) + len(cluster.get("chief", [])))


# ---------------------------------------------------------------------------
# A plain TensorFlow training loop for MultiWorkerMirroredStrategy.
# ---------------------------------------------------------------------------

def uses_multi_worker(model: keras.Model) -> bool:
    """Whether ``model`` was built under ``MultiWorkerMirroredStrategy`` (Keras 3's fit cannot train it)."""
    strategy = getattr(model, "_distribute_strategy", None)
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def fit_loop(model: keras.Model, dataset: tf.data.Dataset, *, epochs: int, checkpoint_dir: str | os.PathLike,
             validation_data: tf.data.Dataset | None = None, timer: EpochTimer | None = None,
             strategy: tf.distribute.Strategy | None = None, verbose: int | str = 2) -> FitHistory:
    """``model.fit(dataset, epochs=..., validation_data=...)`` as a plain loop under a strategy.

    Keras 3's ``fit`` does not train under ``MultiWorkerMirroredStrategy``; this
    loop does (and under every other strategy too), as TensorFlow's multi-worker
    guide writes it:

    1. ``dataset`` (batched with the *global* batch size) is sharded per worker
       with ``AutoShardPolicy.DATA``: every worker reads the same in-memory
       arrays in the same shuffled order and keeps its share of each batch,
       split across its replicas (``strategy.experimental_distribute_dataset``).
    2. Each step runs ``strategy.run``: forward pass, the loss averaged over
       the global batch (``tf.nn.compute_average_loss``), gradients, and the
       model's own optimizer, which sums the gradients of every replica.
    3. After each epoch the validation set is evaluated *whole* on every worker
       with its own copy of the weights (identical everywhere), so the history
       and the chief's outputs cover every test image.
    4. The weights, the optimizer and the epoch counter are saved with
       ``tf.train.CheckpointManager`` into ``checkpoint_dir`` (each worker its
       own folder; see ``report.Run``). Run again, the same call restores the
       last checkpoint and trains the remaining epochs; under multi-worker,
       every worker must be restarted with the same command.

    Parameters
    ----------
    model : keras.Model
        Built and compiled under ``strategy.scope()`` (optimizer, loss and
        ``accuracy`` as metric; the loss must be a sparse categorical
        cross-entropy or any Keras loss taking integer labels).
    dataset : tf.data.Dataset
        ``(images, labels)`` batches of the global batch size; drop the
        remainder under more than one replica.
    epochs : int
        Total epochs, counting those done before an interruption.
    checkpoint_dir : path
    validation_data : tf.data.Dataset, optional
    timer : EpochTimer, optional
        Filled as in ``fit`` (one value per epoch, resumed epochs included).
    strategy : tf.distribute.Strategy, optional
        Default: the strategy the model was built under.
    verbose : 0 for silence, else one line per epoch (as Keras' ``verbose=2``)

    Returns
    -------
    FitHistory
        ``loss``, ``accuracy`` (and ``val_loss``, ``val_accuracy``) per epoch.
    """
    from common.report import write_json

    strategy = strategy or getattr(model, "_distribute_strategy", None) or tf.distribute.get_strategy()
    checkpoint_dir = Path(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    log_path = checkpoint_dir / "epochs.json"
    epoch_log = _read_epoch_log(log_path)
    loss_function = keras.losses.get(model.loss) if not callable(model.loss) else model.loss
    optimizer = model.optimizer

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    distributed = strategy.experimental_distribute_dataset(dataset.with_options(options))

    with strategy.scope():
        epoch_counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch_counter)
    manager = tf.train.CheckpointManager(checkpoint, str(checkpoint_dir / "checkpoints"), max_to_keep=2)
    restored = _restore_agreed(manager, checkpoint, epoch_counter, strategy)

    def train_step(images, labels):
        with tf.GradientTape() as tape:
            probabilities = model(images, training=True)
            per_example = loss_function.call(labels, probabilities) if hasattr(loss_function, "call") \
                else loss_function(labels, probabilities)
            per_example = tf.cast(per_example, tf.float32)
            loss = tf.nn.compute_average_loss(per_example)  # divided by the global batch size
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            scaled = optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        predicted = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        correct = tf.reduce_sum(tf.cast(tf.equal(predicted, tf.cast(tf.reshape(labels, [-1]), tf.int64)), tf.float32))
        count = tf.cast(tf.shape(labels)[0], tf.float32)
        return tf.reduce_sum(per_example), correct, count

    @tf.function
    def distributed_step(images, labels):
        sums = strategy.run(train_step, args=(images, labels))
        return [strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None) for value in sums]

    statistics = [variable for variable in model.non_trainable_variables if variable.dtype.startswith("float")]

    def read_statistics():
        return [tf.identity(variable.value) for variable in statistics]

    @tf.function
    def average_statistics():
        # Batch normalisation's moving means and variances are updated by each replica
        # from its own share of the batch: average them, so every worker holds the same.
        values = strategy.run(read_statistics)
        for variable, value in zip(statistics, values, strict=True):
            variable.assign(strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None))

    evaluate_batch = _local_evaluation_step(model, loss_function)
    history_timer = timer if timer is not None else EpochTimer(images_per_epoch=0)
    start_epoch = int(epoch_counter.numpy()) if restored else 0
    if restored and verbose:
        print(f"restored the checkpoint of epoch {start_epoch} from {manager.latest_checkpoint}", flush=True)
    for epoch in range(start_epoch, epochs):
        history_timer.on_epoch_begin(epoch)
        totals = np.zeros(3)
        for images, labels in distributed:
            totals += [value.numpy() for value in distributed_step(images, labels)]
            history_timer.on_train_batch_end(0)
        if statistics and strategy.num_replicas_in_sync > 1:
            average_statistics()
        logs = {"accuracy": totals[1] / max(totals[2], 1), "loss": totals[0] / max(totals[2], 1)}
        if validation_data is not None:
            validation = _evaluate(validation_data, evaluate_batch)
            logs.update(val_accuracy=validation["accuracy"], val_loss=validation["loss"])
        history_timer.on_epoch_end(epoch)
        record = {key: float(value) for key, value in logs.items()}
        record["_train_seconds"] = history_timer.train_seconds[-1]
        record["_validation_seconds"] = history_timer.validation_seconds[-1]
        epoch_log[str(epoch)] = record
        write_json(log_path, epoch_log)  # before the checkpoint: a restored epoch always has its record
        epoch_counter.assign(epoch + 1)
        manager.save(checkpoint_number=epoch + 1)  # every worker saves: it may take part in collectives
        if verbose:
            values = " - ".join(f"{key}: {value:.4f}" for key, value in logs.items())
            print(f"Epoch {epoch + 1}/{epochs} - {history_timer.train_seconds[-1]:.0f}s - {values}", flush=True)
    if verbose and isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        print(f"weights checksum {weights_checksum(model)} (the same on every worker: they train in step)",
              flush=True)
    return _history_of_every_epoch(epoch_log, epochs, timer, resumed_from=start_epoch)


def weights_checksum(model: keras.Model) -> str:
    """A short hash of every weight's bytes (trainable or not): equal weights, equal checksums."""
    import hashlib

    digest = hashlib.sha256()
    for variable in model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(variable.value)).tobytes())
    return digest.hexdigest()[:16]


def _restore_agreed(manager, checkpoint, epoch_counter, strategy) -> bool:
    """Restore the newest checkpoint that every worker has (a kill can fall between two workers' saves)."""
    latest = manager.latest_checkpoint
    if latest is not None:
        checkpoint.restore(latest)
    mine = int(epoch_counter.numpy()) if latest is not None else 0
    if strategy.num_replicas_in_sync > 1 and isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        def epoch_here():
            return tf.constant([mine], tf.int64)

        @tf.function
        def every_epoch():
            return strategy.gather(strategy.run(epoch_here), axis=0)

        everyone = every_epoch().numpy()
        agreed = int(everyone.min())
        if agreed != mine:
            older = [path for path in manager.checkpoints if path.endswith(f"-{agreed}")]
            if agreed == 0 or not older:
                raise UserError(f"the workers' checkpoints disagree (epochs {sorted(set(everyone.tolist()))}) "
                                f"and {manager.directory} has no checkpoint of epoch {agreed}: start every "
                                "worker again with --fresh")
            checkpoint.restore(older[0])
    return latest is not None


def _local_evaluation_step(model: keras.Model, loss_function):
    """A compiled step that runs ``model`` on one batch here, outside any strategy (one per model)."""
    if getattr(model, "_local_evaluation_step", None) is not None:
        return model._local_evaluation_step

    @tf.function(reduce_retracing=True)
    def step(images, labels):
        probabilities = model(images, training=False)
        per_example = loss_function.call(labels, probabilities) if hasattr(loss_function, "call") \
            else loss_function(labels, probabilities)
        return probabilities, tf.cast(per_example, tf.float32)

    model._local_evaluation_step = step
    return step


def _evaluate(dataset: tf.data.Dataset, step) -> dict:
    """Loss, accuracy and predicted classes over every batch of ``dataset``, on this process alone."""
    loss, correct, count, predicted = 0.0, 0, 0, []
    for images, labels in dataset:
        probabilities, per_example = step(images, labels)
        classes = np.argmax(probabilities.numpy(), axis=-1)
        labels = np.reshape(labels.numpy(), [-1])
        loss += float(per_example.numpy().sum())
        correct += int((classes == labels).sum())
        count += len(labels)
        predicted.append(classes)
    return {"loss": loss / max(count, 1), "accuracy": correct / max(count, 1),
            "predicted": np.concatenate(predicted) if predicted else np.zeros(0, np.int64)}


def predict_classes(model: keras.Model, dataset: tf.data.Dataset) -> np.ndarray:
    """The predicted class of every image in ``dataset`` (``model.predict(...).argmax(1)``).

    Under ``MultiWorkerMirroredStrategy`` Keras' ``predict`` returns only this
    worker's shard; here each worker predicts the whole dataset with its own
    (identical) copy of the weights, so the chief's confusion matrix covers
    every test image.
    """
    if not uses_multi_worker(model):
        return model.predict(dataset, verbose=0).argmax(axis=1)
    loss_function = keras.losses.get(model.loss) if not callable(model.loss) else model.loss
    return _evaluate(dataset, _local_evaluation_step(model, loss_function))["predicted"]


def evaluate_accuracy(model: keras.Model, dataset: tf.data.Dataset) -> float:
    """Accuracy over the whole of ``dataset``: ``model.evaluate``, which under
    ``MultiWorkerMirroredStrategy`` would see only this worker's shard."""
    if not uses_multi_worker(model):
        return float(model.evaluate(dataset, verbose=0, return_dict=True)["accuracy"])
    loss_function = keras.losses.get(model.loss) if not callable(model.loss) else model.loss
    return float(_evaluate(dataset, _local_evaluation_step(model, loss_function))["accuracy"])
