"""Training on several devices or machines: ``tf.distribute`` strategies and a plain training loop with checkpoints.

Keras 3's ``model.fit`` cannot train under ``MultiWorkerMirroredStrategy``, so
:func:`train` is the loop of TensorFlow's multi-worker guide, and the same loop
runs under every strategy (one device, the GPUs of one machine, several machines):

1. :func:`make_strategy` builds the strategy, in the order TensorFlow needs;
2. :func:`train` shards the training batches per worker, runs ``strategy.run``
   for each step (the loss averaged over the *global* batch), evaluates the whole
   test set on every worker after each epoch, and saves a
   ``tf.train.CheckpointManager`` checkpoint; run again, it goes on from there;
3. :func:`evaluate` and :func:`weights_checksum` work on one process's copy of
   the model, which is the same on every worker.
"""

from __future__ import annotations

import csv
import hashlib
import os
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from common.errors import UserError

STRATEGIES = ("one-device", "mirrored", "multi-worker")


def split_cpu(devices: int) -> None:
    """Present the CPU as ``devices`` logical devices (``/cpu:0`` ... ``/cpu:N-1``).

    Lets ``MirroredStrategy`` run its multi-replica code path without GPUs: each
    replica gets a share of the same cores, so it teaches and tests, it does not
    speed anything up. Must run before TensorFlow executes its first operation.
    """
    if devices == 1:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
    except RuntimeError as error:
        raise UserError(f"cannot split the CPU into {devices} devices ({error}): call split_cpu "
                        "before TensorFlow runs anything") from None


def make_strategy(name: str, cpu_devices: int = 1) -> tf.distribute.Strategy:
    """A ``tf.distribute`` strategy by name, made before anything lists TensorFlow's devices.

    Parameters
    ----------
    name : {"one-device", "mirrored", "multi-worker"}
        * one-device: everything on the first GPU, else the CPU;
        * mirrored: one replica per local GPU (or per logical CPU device, see
          ``cpu_devices``), gradients summed across them;
        * multi-worker: one replica per GPU (or the CPU) on every machine listed in
          ``TF_CONFIG``; each machine runs the same command with its own ``task.index``.
    cpu_devices : int
        Split the CPU into this many logical devices first (:func:`split_cpu`); not
        with multi-worker, whose workers each train on their own devices.

    Returns
    -------
    tf.distribute.Strategy; its ``num_replicas_in_sync`` is the number of replicas
    a global batch is split across.
    """
    if name not in STRATEGIES:
        raise UserError(f"--strategy {name!r}: expected one of {', '.join(STRATEGIES)}")
    if name == "multi-worker":
        if cpu_devices > 1:
            raise UserError("--cpu-devices with --strategy multi-worker: each worker trains on its own "
                            "GPUs (or its CPU); try --strategy mirrored --cpu-devices N on one machine")
        if "TF_CONFIG" not in os.environ:
            print("note: --strategy multi-worker without TF_CONFIG runs as a single worker", flush=True)
        # Collective ops can only be configured at program start-up: first, before any device query.
        return tf.distribute.MultiWorkerMirroredStrategy()
    split_cpu(cpu_devices)
    gpus = tf.config.list_logical_devices("GPU")
    if name == "one-device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    return tf.distribute.MirroredStrategy([device.name for device in gpus or tf.config.list_logical_devices("CPU")])


def workers(strategy: tf.distribute.Strategy) -> int:
    """Processes that train together: the workers of ``TF_CONFIG`` under multi-worker, else 1."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return 1
    from common.run import tf_config

    cluster = tf_config().get("cluster", {})
    return max(1, len(cluster.get("worker", [])) + len(cluster.get("chief", [])))


def describe(strategy: tf.distribute.Strategy) -> str:
    """``"2 replica(s) in 2 worker(s) on /job:worker/.../CPU:0"``: what the strategy trains on."""
    count = workers(strategy)
    across = f" in {count} worker(s)" if count > 1 else ""
    return f"{strategy.num_replicas_in_sync} replica(s){across} on {', '.join(strategy.extended.worker_devices)}"


def train(model: keras.Model, dataset: tf.data.Dataset, *, strategy: tf.distribute.Strategy, epochs: int,
          checkpoint_dir: str | os.PathLike, log: str | os.PathLike,
          validation_data: tf.data.Dataset | None = None) -> int:
    """``model.fit(dataset, epochs=..., validation_data=...)`` as a plain loop under ``strategy``.

    1. ``dataset`` (batched with the *global* batch size; drop the remainder under
       more than one replica) is sharded per worker with ``AutoShardPolicy.DATA``:
       every worker reads the same arrays in the same shuffled order and keeps its
       share of each batch, split across its replicas.
    2. Each step runs ``strategy.run``: forward pass, the loss averaged over the
       global batch (``tf.nn.compute_average_loss``), gradients, and the model's
       own optimizer, which sums the gradients of every replica.
    3. After each epoch, batch normalisation's statistics are averaged over the
       replicas, the validation set is evaluated *whole* on every worker with its
       own (identical) copy of the weights, the epoch's logs are appended to the CSV
       file ``log`` (the columns of Keras' ``CSVLogger``), and the weights, the
       optimizer and the epoch counter are saved with ``tf.train.CheckpointManager``.
    4. Called again (after Ctrl-C, ``kill -9``, a dead worker), the same call restores
       the newest checkpoint that every worker has and trains the epochs left.
       Under multi-worker, every worker must be started again with the same command.

    Parameters
    ----------
    model : keras.Model
        Built and compiled under ``strategy.scope()`` with an optimizer and a loss that
        takes integer labels (``sparse_categorical_crossentropy``).
    dataset, validation_data : tf.data.Dataset of ``(images, labels)`` batches
    strategy : tf.distribute.Strategy
    epochs : int, in all, counting those trained before an interruption
    checkpoint_dir : path, a folder of this worker's own
    log : path, the CSV file of every epoch's logs (appended)

    Returns
    -------
    int, the epochs trained by this call.
    """
    loss_function = _per_example_loss(model)
    optimizer = model.optimizer
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    distributed = strategy.experimental_distribute_dataset(dataset.with_options(options))
    with strategy.scope():
        # Built here, not by the first step: a step runs per replica, where new variables cannot be made.
        optimizer.build(model.trainable_variables)
        epoch_counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch_counter)
    manager = tf.train.CheckpointManager(checkpoint, str(checkpoint_dir), max_to_keep=2)
    start_epoch = _restore_agreed(manager, checkpoint, epoch_counter, strategy)
    if start_epoch:
        print(f"restored the checkpoint of epoch {start_epoch} from {manager.latest_checkpoint}", flush=True)

    def train_step(images, labels):
        with tf.GradientTape() as tape:
            probabilities = model(images, training=True)
            per_example = tf.cast(loss_function(labels, probabilities), tf.float32)
            loss = tf.nn.compute_average_loss(per_example)  # divided by the global batch size
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            scaled = optimizer.scale_loss(loss)  # mixed float16 scales the loss; a no-op otherwise
        gradients = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        predicted = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        correct = tf.reduce_sum(tf.cast(predicted == tf.cast(tf.reshape(labels, [-1]), tf.int64), tf.float32))
        return tf.reduce_sum(per_example), correct, tf.cast(tf.shape(labels)[0], tf.float32)

    @tf.function
    def distributed_step(images, labels):
        sums = strategy.run(train_step, args=(images, labels))
        return [strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None) for value in sums]

    statistics = [variable for variable in model.non_trainable_variables if variable.dtype.startswith("float")]

    @tf.function
    def average_statistics():
        # Batch normalisation's moving means and variances are updated by each replica
        # from its own share of the batch: average them, so every worker holds the same.
        values = strategy.run(lambda: [tf.identity(variable.value) for variable in statistics])
        for variable, value in zip(statistics, values, strict=True):
            variable.assign(strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None))

    for epoch in range(start_epoch, epochs):
        epoch_start = time.perf_counter()
        totals = np.zeros(3)
        for images, labels in distributed:
            totals += [value.numpy() for value in distributed_step(images, labels)]
        if statistics and strategy.num_replicas_in_sync > 1:
            average_statistics()
        train_seconds = time.perf_counter() - epoch_start
        logs = {"accuracy": totals[1] / max(totals[2], 1), "loss": totals[0] / max(totals[2], 1)}
        if validation_data is not None:
            validation = evaluate(model, validation_data)
            logs.update(val_accuracy=validation["accuracy"], val_loss=validation["loss"])
        logs.update(train_seconds=train_seconds, validation_seconds=time.perf_counter() - epoch_start - train_seconds)
        _append_csv_row(Path(log), epoch, logs)  # before the checkpoint: a restored epoch always has its row
        epoch_counter.assign(epoch + 1)
        manager.save(checkpoint_number=epoch + 1)  # every worker saves: it may take part in collectives
        values = " - ".join(f"{key}: {value:.4f}" for key, value in logs.items() if not key.endswith("seconds"))
        print(f"Epoch {epoch + 1}/{epochs} - {train_seconds:.0f}s - {values}", flush=True)
    return max(epochs - start_epoch, 0)


def evaluate(model: keras.Model, dataset: tf.data.Dataset) -> dict:
    """Loss, accuracy and the predicted class of every example in ``dataset``, on this process alone.

    Keras' ``evaluate`` and ``predict`` under ``MultiWorkerMirroredStrategy`` see
    only this worker's shard; here each worker runs the whole dataset on its own
    copy of the weights (the same on every worker).

    Returns
    -------
    dict with ``loss``, ``accuracy`` (floats) and ``predicted`` ((N,) int64).
    """
    step = _evaluation_step(model)
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


def weights_checksum(model: keras.Model) -> str:
    """A short hash of every weight's bytes (trainable or not): equal weights, equal checksums."""
    digest = hashlib.sha256()
    for variable in model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(variable.value)).tobytes())
    return digest.hexdigest()[:16]


def _evaluation_step(model: keras.Model):
    """A compiled step that runs ``model`` on one batch here, outside any strategy (one per model)."""
    if getattr(model, "_lab_evaluation_step", None) is None:
        loss_function = _per_example_loss(model)

        @tf.function(reduce_retracing=True)
        def step(images, labels):
            probabilities = model(images, training=False)
            return probabilities, tf.cast(loss_function(labels, probabilities), tf.float32)

        model._lab_evaluation_step = step
    return model._lab_evaluation_step


def _per_example_loss(model: keras.Model):
    """The model's loss as ``(labels, predictions) -> one value per example`` (no reduction)."""
    loss = keras.losses.get(model.loss)
    return loss.call if isinstance(loss, keras.losses.Loss) else loss  # a Loss reduces; its call does not


def _restore_agreed(manager, checkpoint, epoch_counter, strategy) -> int:
    """Restore the newest checkpoint that every worker has (a kill can fall between two workers' saves).

    Returns the restored epoch (0 when there is none).
    """
    if manager.latest_checkpoint is not None:
        checkpoint.restore(manager.latest_checkpoint)
    mine = int(epoch_counter.numpy()) if manager.latest_checkpoint is not None else 0
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or strategy.num_replicas_in_sync == 1:
        return mine

    @tf.function
    def every_epoch():
        return strategy.gather(strategy.run(lambda: tf.constant([mine], tf.int64)), axis=0)

    everyone = every_epoch().numpy()
    agreed = int(everyone.min())
    if agreed != mine:
        older = [path for path in manager.checkpoints if path.endswith(f"-{agreed}")]
        if agreed == 0 or not older:  # this worker's weights would differ from the others'
            raise UserError(f"the workers' checkpoints disagree (epochs {sorted(set(everyone.tolist()))}) and "
                            f"{manager.directory} has no checkpoint of epoch {agreed}: start every worker again "
                            "with --fresh")
        checkpoint.restore(older[0])
        print(f"another worker had only epoch {agreed}: going back to it", flush=True)
    return agreed


def _append_csv_row(path: Path, epoch: int, logs: dict) -> None:
    """One row of Keras' ``CSVLogger`` layout (``epoch`` then the sorted keys), header on a new file."""
    keys = sorted(logs)
    new = not path.is_file() or path.stat().st_size == 0
    with open(path, "a", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(["epoch", *keys])
        writer.writerow([epoch, *(logs[key] for key in keys)])
