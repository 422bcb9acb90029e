"""The lab's timelined training loop: every wait for input and every step on the timeline."""

from __future__ import annotations

import threading
from typing import Any, NamedTuple

from common.timeline.record import Recorder, now


class _Steps:
    """The compiled train and test steps of ``model``, with the metrics they update."""

    def __init__(self, model, optimizer, loss_function) -> None:
        import keras
        import tensorflow as tf

        self.metrics = {name: keras.metrics.Mean() for name in ("train_loss", "test_loss")}
        self.metrics |= {name: keras.metrics.SparseCategoricalAccuracy() for name in ("train_accuracy",
                                                                                       "test_accuracy")}
        self.model, self.optimizer = model, optimizer

        @tf.function(reduce_retracing=True)
        def train(images, labels):
            with tf.GradientTape() as tape:
                predictions = model(images, training=True)
                batch_loss = loss_function(labels, predictions)
            optimizer.apply(tape.gradient(batch_loss, model.trainable_variables), model.trainable_variables)
            self.metrics["train_loss"].update_state(batch_loss)
            self.metrics["train_accuracy"].update_state(labels, predictions)
            return batch_loss

        @tf.function(reduce_retracing=True)
        def test(images, labels):
            predictions = model(images, training=False)
            batch_loss = loss_function(labels, predictions)
            self.metrics["test_loss"].update_state(batch_loss)
            self.metrics["test_accuracy"].update_state(labels, predictions)
            return batch_loss

        self.train, self.test = train, test

    def trace(self, train_dataset, test_dataset) -> None:
        """Build both steps before the clock starts, so the first Train span is a step, not graph building."""
        import tensorflow as tf

        self.optimizer.build(self.model.trainable_variables)
        for step, dataset in ((self.train, train_dataset), (self.test, test_dataset)):
            image_spec, label_spec = dataset.element_spec[:2]  # a None batch size: one trace for every batch
            step.get_concrete_function(tf.TensorSpec([None, *image_spec.shape[1:]], image_spec.dtype),
                                       tf.TensorSpec([None, *label_spec.shape[1:]], label_spec.dtype))

    def results(self) -> dict[str, float]:
        values = {name: float(metric.result()) for name, metric in self.metrics.items()}
        for metric in self.metrics.values():
            metric.reset_state()
        return values


class _Pass(NamedTuple):
    images: int
    seconds: float
    waited: float


def _timed_pass(dataset, step, stage: str, epoch: int, recorder: Recorder, bar) -> tuple[_Pass, Any]:
    """One pass over ``dataset``: a ``Wait`` span before each batch (and after the last), a ``stage`` span per step.

    Returns the pass's numbers and its exhausted iterator, which the caller deletes
    after the epoch (see the Teardown span).

    Starting the pipeline (``iter``) and its shutdown after the last batch are waits
    for input too, so the Wait spans cover all of the loop's time that is no step.
    The step's loss is read back before the clock stops, so asynchronous devices
    cannot hide work.
    """
    images_seen, waited, batch = 0, 0.0, 0
    loop_start = wait_start = now()
    iterator = iter(dataset)
    for images, labels, tags in iterator:
        step_start = now()
        recorder.record("Wait", wait_start, step_start - wait_start, -1, epoch, batch)
        float(step(images, labels))
        recorder.record_tags(stage, step_start, now() - step_start, tags.numpy(), epoch, batch)
        waited += step_start - wait_start
        images_seen += int(images.shape[0])
        batch += 1
        if bar is not None:
            bar.update(1)
        wait_start = now()
    end = now()
    recorder.record("Wait", wait_start, end - wait_start, -1, epoch, batch)
    if bar is not None:
        bar.close()
    return _Pass(images_seen, end - loop_start, waited + end - wait_start), iterator


def timelined_benchmark(model, train_dataset, test_dataset, *, epochs: int, recorder: Recorder, optimizer=None,
                        loss=None, train_steps: int | None = None, test_steps: int | None = None,
                        progress: bool = True) -> list[dict[str, float]]:
    """Train and test ``model`` epoch by epoch, recording Wait, Train, Test, Epoch and Teardown spans.

    The lab's ``timelined_benchmark`` as a custom loop (:func:`_timed_pass` per
    loop). While epoch ``e`` runs, ``recorder.training_epoch`` is ``e``, so the
    pipeline's own spans (Open, Read, maps) carry the epoch in which they ran. After
    each ``Epoch`` span, a ``Teardown`` span covers deleting the epoch's exhausted
    iterators: freeing one waits for its tf.data tuning thread to wake (a period that
    doubles up to about a minute, with or without a ``cache()``), which is neither
    input wait nor epoch time. That wait uses no CPU, so it runs in a background
    thread beside the next epoch (its span overlaps it); only the last epoch's is
    waited for, at the end.

    Parameters
    ----------
    model : keras.Model, outputs class probabilities (softmax), as the lab's models do
    train_dataset, test_dataset : tf.data.Dataset of ``(images, labels, tags)`` batches
    epochs : int
    recorder : Recorder
    optimizer : keras optimizer, optional
        Default: a fresh ``Adam()``, so two runs from the same saved weights start
        alike (the lab reuses one Adam, whose moments carry over into its second run).
    loss : keras loss, optional; default ``SparseCategoricalCrossentropy()`` on probabilities
    train_steps, test_steps : int, optional; batches per epoch, for the progress bars only
    progress : bool; bars on a terminal or in a notebook (a log file gets the epoch lines alone)

    Returns
    -------
    list of dict, one per epoch: ``epoch``, ``seconds``, ``train_seconds``, ``test_seconds``,
    ``train_loss``, ``train_accuracy``, ``test_loss``, ``test_accuracy``, ``train_images``,
    ``images_per_second`` (of the training loop), ``input_wait_share`` (waiting time / epoch
    time) and ``teardown_seconds`` (how long the loop waited for the epoch's iterators to
    be freed, after ``seconds``: 0 for all epochs but the last).
    """
    import keras

    from common import console

    steps = _Steps(model, optimizer or keras.optimizers.Adam(), loss or keras.losses.SparseCategoricalCrossentropy())
    steps.trace(train_dataset, test_dataset)

    def bar(stage, epoch, total):
        if progress and console.interactive():
            return console.progress(total=total, desc=f"epoch {epoch + 1} {stage}", unit="batch", leave=False)
        return None

    history, deleters = [], []
    try:
        for epoch in range(epochs):
            recorder.set_training_epoch(epoch)
            epoch_start = now()
            train, train_iterator = _timed_pass(train_dataset, steps.train, "Train", epoch, recorder,
                                                bar("train", epoch, train_steps))
            test, test_iterator = _timed_pass(test_dataset, steps.test, "Test", epoch, recorder,
                                              bar("test", epoch, test_steps))
            seconds = now() - epoch_start
            recorder.record("Epoch", epoch_start, seconds, -1, epoch, -1)
            finished = [train_iterator, test_iterator]
            del train_iterator, test_iterator  # `finished` holds the last references
            deleters.append(free_in_background(finished, recorder, epoch))
            row = {"epoch": epoch + 1, "seconds": seconds, "train_seconds": train.seconds,
                   "test_seconds": test.seconds, **steps.results(), "train_images": train.images,
                   "images_per_second": train.images / train.seconds if train.seconds > 0 else 0.0,
                   "input_wait_share": (train.waited + test.waited) / seconds if seconds > 0 else 0.0}
            print(f"epoch {row['epoch']}: {seconds:.1f} s, loss {row['train_loss']:.4f}, accuracy "
                  f"{row['train_accuracy']:.4f}, test loss {row['test_loss']:.4f}, test accuracy "
                  f"{row['test_accuracy']:.4f}, {row['images_per_second']:.0f} images/s, input wait "
                  f"{100 * row['input_wait_share']:.1f}%", flush=True)
            history.append(row)
    finally:
        recorder.set_training_epoch(None)
    # The loop waits for the deletions only here: earlier epochs' ran beside the next epoch.
    join_start = now()
    for deleter in deleters:
        deleter.join()
    for row in history:
        row["teardown_seconds"] = 0.0
    if history:
        history[-1]["teardown_seconds"] = now() - join_start
    return history


def free_in_background(iterators: list, recorder: Recorder | None = None, epoch: int = -1) -> threading.Thread:
    """Drop the last references to finished tf.data iterators in a background thread; returns the thread.

    Freeing an iterator can wait for its tf.data tuning thread to wake (seconds, up to
    about a minute) without using the CPU, so nothing needs to wait for it. The caller
    must hold no other reference (pass ``[iter(dataset)]``, not a name it keeps). With a
    ``recorder``, the thread records a ``Teardown`` span for ``epoch``.
    """
    def free() -> None:
        start = now()
        iterators.clear()
        if recorder is not None:
            recorder.record("Teardown", start, now() - start, -1, epoch, -1)

    thread = threading.Thread(target=free, name="free tf.data iterators", daemon=True)
    thread.start()
    return thread
