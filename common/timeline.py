"""Where does input-pipeline time go? Record spans, draw them as a timeline, summarise.

The lab proves that the input pipeline, not the model, can set the training speed
with a timeline picture: one row per stage (Open, Read, Map, Train, Test, Epoch),
one bar per piece of work, coloured by the training epoch in which it ran. This
module records those bars honestly, without the lab's ``time.sleep`` calls and
without its growing ``tf.concat`` accumulators.

How it works
------------
* Every element of a timed dataset is ``(image, label, tag)``; the ``tag`` is an
  int64 ``(3,)`` vector ``(source, epoch, index)`` that says which source file,
  which pass over it and which example it is (``(B, 3)`` once batched). Its shape
  is fixed by construction, so ``batch``, ``shuffle``, ``interleave`` and
  ``cache`` handle it like any other tensor.
* The spans themselves never travel through the pipeline: whoever does the
  work (the source generator, a mapped function, the training loop) appends a
  :class:`Span` to a :class:`Recorder`, a list guarded by a lock, so spans
  from parallel ``map`` calls, ``interleave`` readers and generator threads are
  never lost, mixed up or reshaped.
* Times are seconds since the Unix epoch: ``time.time()`` in Python and
  ``tf.timestamp()`` inside graph code read the same clock, so a map running in
  a tf.data worker thread and the Python training loop line up on one axis.
* While :func:`timelined_benchmark` trains, it tells the recorder which epoch is
  running, and every span recorded meanwhile (Open, Read, a map, the trainer's
  own) is stamped with that epoch. The tag's pass number is kept beside it as
  ``data_epoch``: behind a ``cache()`` the two differ (a map after the cache runs
  in the second epoch on data read in the first pass).
* ``cache()`` placed after a timed stage replays its outputs without running the
  stage again, so from the second pass on that stage records nothing: the
  picture shows exactly what ran.

Example (the assignment's image files; lab04 does the same with CIFAR batches)::

    recorder = timeline.Recorder()
    source = timeline.time_measured_dataset(
        ["train.csv"], open_file=read_csv_rows, read_item=decode_image_file,
        element_spec=(tf.TensorSpec((300, 300, 3), tf.uint8), tf.TensorSpec((), tf.int64)),
        recorder=recorder)
    train = (source.shuffle(1000).batch(32)
             .map(timeline.timed_map(augment_batch, recorder), num_parallel_calls=tf.data.AUTOTUNE)
             .prefetch(tf.data.AUTOTUNE))
    history = timeline.timelined_benchmark(model, train, test, epochs=2, recorder=recorder)
    timeline.draw_timeline(recorder.spans(), "Optimized", path="optimized_timeline.png")
    print(timeline.summarize(recorder.spans()))

``read_csv_rows(path) -> items`` and ``decode_image_file(item) -> (image, label)``
are yours; ``augment_batch(images, labels) -> (images, labels)`` is any
TensorFlow function (it sees one element or a batch, whichever the dataset holds).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np

# Rows of the picture, top to bottom, in the order the work happens.
STAGE_ORDER = ("Open", "Read", "Decode", "Map", "Wait", "Train", "Test", "Epoch", "Teardown")
TAG_SPEC_SHAPE = (3,)  # (source, epoch, index)
_ANNOTATE_LIMIT = 400  # beyond this many spans, index labels would be an unreadable smear
_LABEL_POINTS = 6  # font size of the index labels


def now() -> float:
    """Seconds since the Unix epoch: the clock of every span (same as ``tf.timestamp()``)."""
    return time.time()


class Span(NamedTuple):
    """One piece of work on the timeline.

    Attributes
    ----------
    stage : str
        ``Open``, ``Read``, ``Decode``, ``Map``, ``Wait``, ``Train``, ``Test``, ``Epoch``,
        ``Teardown`` or your own.
    start, duration : float
        Seconds (start on the :func:`now` clock).
    source : int
        Id of the source file (from :meth:`Recorder.new_source`); -1 for spans of no
        source (``Wait``, ``Epoch``, ``Teardown``).
    epoch : int
        The training epoch in which the work ran (0-based), for every stage recorded
        while :func:`timelined_benchmark` runs. Outside training (a dataset iterated
        by hand), pipeline stages fall back to ``data_epoch``.
    index : int
        Example index within its source pass for per-example spans, batch number
        within the epoch for trainer spans, -1 otherwise (``Open``, batch-wise ``Map``).
    examples : (n, 3) int64 ndarray or None
        For spans that cover a batch, the ``(source, epoch, index)`` tag of every
        example in it (the tag's epoch is the data's pass, as in ``data_epoch``).
    data_epoch : int
        The pass over the source file that produced the data (the tag's epoch; of
        the batch's first example); -1 for spans without data (``Wait``, ``Epoch``,
        ``Teardown``). It differs from ``epoch`` behind a ``cache()``: a map after
        the cache runs in epoch 1 (the second) on data from pass 0, and a Train step
        after a cache placed after the map trains on pass-0 data in every epoch.
    """

    stage: str
    start: float
    duration: float
    source: int = -1
    epoch: int = 0
    index: int = -1
    examples: np.ndarray | None = None
    data_epoch: int = -1

    @property
    def end(self) -> float:
        return self.start + self.duration


class Recorder:
    """A thread-safe collector of :class:`Span` records.

    Appends happen under a lock, so any number of tf.data worker threads, generator
    threads and the training loop may record at once. The same lock guards the
    training epoch that :func:`timelined_benchmark` sets while it runs, which stamps
    every span recorded without an explicit epoch.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[Span] = []
        self._source_count = 0
        self._passes: dict[int, int] = {}
        self._training_epoch: int | None = None

    @property
    def training_epoch(self) -> int | None:
        """The training epoch running now (0-based), or None outside :func:`timelined_benchmark`."""
        with self._lock:
            return self._training_epoch

    def set_training_epoch(self, epoch: int | None) -> None:
        """Say which training epoch is running (None: training is over)."""
        with self._lock:
            self._training_epoch = None if epoch is None else int(epoch)

    def record(self, stage: str, start: float, duration: float, source: int = -1, epoch: int | None = None,
               index: int = -1, examples: np.ndarray | None = None, data_epoch: int = -1) -> None:
        """Add one span (see :class:`Span` for the fields).

        ``epoch=None`` (the default) takes the training epoch running now; outside
        training, ``data_epoch`` if it is given (>= 0), else 0.
        """
        with self._lock:
            if epoch is None:
                if self._training_epoch is not None:
                    epoch = self._training_epoch
                else:
                    epoch = data_epoch if data_epoch >= 0 else 0
            span = Span(stage, float(start), float(duration), int(source), int(epoch), int(index), examples,
                        int(data_epoch))
            self._spans.append(span)

    def record_tags(self, stage: str, start: float, duration: float, tags: np.ndarray,
                    epoch: int | None = None, index: int = -1) -> None:
        """Add a span for the element or batch whose tags are ``tags``.

        Parameters
        ----------
        tags : (3,) or (B, 3) int array
            ``(source, epoch, index)`` of one example, or of every example in a batch.
            Their epoch (of the first example) becomes the span's ``data_epoch``.
        epoch : int, optional
            The span's epoch. Default: the training epoch running now (so a map
            behind a ``cache()`` is stamped with the epoch in which it ran, not with
            its cached data's pass); outside training, the tags' epoch.
        index : int
            Batch number for batch spans; ignored for one example (its index is used).
        """
        tags = np.asarray(tags, dtype=np.int64)
        if tags.ndim == 1:
            source, data_epoch, example = (int(value) for value in tags)
            self.record(stage, start, duration, source, epoch, example, data_epoch=data_epoch)
        elif len(tags) == 0:
            self.record(stage, start, duration, -1, epoch, index, tags.reshape(0, 3))
        else:
            self.record(stage, start, duration, int(tags[0, 0]), epoch, index, tags.copy(),
                        data_epoch=int(tags[0, 1]))

    def new_source(self) -> int:
        """A new source id (0, 1, 2, ...), used in tags and spans."""
        with self._lock:
            self._source_count += 1
            return self._source_count - 1

    def next_pass(self, source: int) -> int:
        """The number of the pass that is starting over ``source``: 0, 1, 2, ..."""
        with self._lock:
            current = self._passes.get(source, -1) + 1
            self._passes[source] = current
            return current

    def spans(self) -> list[Span]:
        """A snapshot of every span recorded so far, sorted by start time."""
        with self._lock:
            snapshot = list(self._spans)
        return sorted(snapshot, key=lambda span: span.start)

    def __len__(self) -> int:
        with self._lock:
            return len(self._spans)


# --------------------------------------------------------------------------- sources


def time_measured_dataset(
    paths: Sequence[str],
    open_file: Callable[[str], Iterable[Any]],
    read_item: Callable[[Any], tuple[Any, Any]],
    element_spec: tuple,
    recorder: Recorder | None,
    *,
    items_are_blocks: bool = False,
    interleave: bool = False,
):
    """The lab's ``TimeMeasuredDataset``: a generator source that records Open and Read.

    For every path (in order, or interleaved), ``open_file(path)`` returns the items
    it holds (image paths from a CSV file, the rows of a pickled CIFAR batch, ...);
    that call is one ``Open`` span. Then ``read_item(item)`` turns each item into
    data; each call is one ``Read`` span.

    Parameters
    ----------
    paths : sequence of str
        The source files. Each gets its own source id and pass counter.
    open_file : callable ``path -> iterable of items``
    read_item : callable ``item -> (image, label)``
        With ``items_are_blocks=True``: ``item -> (images (n, ...), labels (n,))``, a
        block of examples read at once (one ``Read`` span covering all ``n``); the
        dataset still yields single examples.
    element_spec : (tf.TensorSpec, tf.TensorSpec)
        Shape and dtype of one image and one label.
    recorder : Recorder or None
        ``None`` records nothing but yields the same elements (to measure the
        recording's own cost).
    interleave : bool
        Read the files in parallel with ``Dataset.interleave`` (the lab's "parallelize
        data extraction"), all of them at once, instead of one after another with ``flat_map``.

    Returns
    -------
    tf.data.Dataset of ``(image, label, tag)``, ``tag`` int64 ``(3,)`` = (source, epoch, index),
    the tag's epoch being the pass over the file. The Open and Read spans carry that
    pass as ``data_epoch``, and the training epoch (if one is running) as ``epoch``.

    Notes
    -----
    Where the lab differs: its epoch counter is keyed by a dataset id drawn once,
    when ``flat_map`` traces the function, so every file read through one
    ``interleave`` shares one counter; and it averages one ``Read`` time over all
    examples. Here every file has its own id and pass counter, and each ``Read``
    span is the time that read really took.
    """
    import tensorflow as tf

    image_spec, label_spec = element_spec
    paths = [str(path) for path in paths]
    if not paths:
        raise ValueError("time_measured_dataset needs at least one source path")
    scratch = recorder if recorder is not None else Recorder()  # ids and pass counters only
    source_ids = [scratch.new_source() for _ in paths]

    def generate(path: bytes, source: int):
        source = int(source)
        data_pass = scratch.next_pass(source)
        start = now()
        items = open_file(path.decode())
        if recorder is not None:
            recorder.record("Open", start, now() - start, source, None, -1, data_epoch=data_pass)
        index = 0
        for item in items:
            start = now()
            images, labels = read_item(item)
            duration = now() - start
            if items_are_blocks:
                count = len(labels)
                tags = np.empty((count, 3), dtype=np.int64)
                tags[:, 0], tags[:, 1], tags[:, 2] = source, data_pass, np.arange(index, index + count)
                if recorder is not None:
                    recorder.record("Read", start, duration, source, None, -1, tags, data_epoch=data_pass)
            else:
                count = 1
                tags = np.array([source, data_pass, index], dtype=np.int64)
                if recorder is not None:
                    recorder.record("Read", start, duration, source, None, index, data_epoch=data_pass)
            yield images, labels, tags
            index += count

    if items_are_blocks:
        block_spec = (
            tf.TensorSpec((None, *image_spec.shape), image_spec.dtype),
            tf.TensorSpec((None, *label_spec.shape), label_spec.dtype),
            tf.TensorSpec((None, 3), tf.int64),
        )
    else:
        block_spec = (image_spec, label_spec, tf.TensorSpec(TAG_SPEC_SHAPE, tf.int64))

    def one_file(path, source):
        dataset = tf.data.Dataset.from_generator(generate, output_signature=block_spec, args=(path, source))
        return dataset.unbatch() if items_are_blocks else dataset

    files = tf.data.Dataset.from_tensor_slices((paths, np.array(source_ids, dtype=np.int64)))
    if interleave:
        return files.interleave(one_file, cycle_length=len(paths), num_parallel_calls=len(paths),
                                deterministic=True)
    return files.flat_map(one_file)


def with_timeline_tags(dataset, recorder: Recorder):
    """Give ``(image, label)`` elements a tag ``(source, epoch, index)``, as :func:`time_measured_dataset` does.

    For a source that is not timed (TFRecords read by ``tfrecord_tools.load``): its
    work records no span, but the maps and the trainer downstream can. ``flat_map``
    over ``range(1)`` runs its function once per pass, so the pass counter is read
    afresh every epoch.
    """
    import tensorflow as tf

    source = recorder.new_source()

    def next_pass():
        return np.int64(recorder.next_pass(source))

    def one_pass(_):
        data_pass = tf.numpy_function(next_pass, [], tf.int64, stateful=True)
        return dataset.enumerate().map(
            lambda index, element: (*element, tf.stack([tf.constant(source, tf.int64), data_pass, index])))

    return tf.data.Dataset.range(1).flat_map(one_pass)


# --------------------------------------------------------------------------- maps


def timed_map(
    func: Callable,
    recorder: Recorder | None,
    *,
    stage: str = "Map",
    in_python: bool = False,
) -> Callable:
    """Wrap ``func(images, labels) -> (images, labels)`` for ``Dataset.map`` over tagged elements.

    The wrapper takes ``(images, labels, tags)`` and returns ``(*func(images, labels), tags)``,
    recording one ``stage`` span per call: per example for an element-wise map,
    per batch (covering every example's tag) for a batch-wise one. The span's
    ``epoch`` is the training epoch in which the call ran (see
    :meth:`Recorder.record_tags`), its ``data_epoch`` the tags' pass.

    Parameters
    ----------
    func : callable
        TensorFlow code; it receives whatever the dataset holds, one example or a batch.
    recorder : Recorder or None
        ``None``: no recording, the same data.
    stage : str
        Row name on the timeline.
    in_python : bool
        ``False`` (default): ``func`` runs as graph code in tf.data's threads; start
        and end come from ``tf.timestamp()`` ordered by control dependencies around
        ``func``, and one small ``tf.numpy_function`` call hands the span to the
        recorder. ``True``: the lab's ``map_decorator``: ``func`` runs eagerly inside
        ``tf.py_function``, one Python call per element, timed in Python. That is
        how the lab's naive pipeline maps (and why it is slow).

    Returns
    -------
    callable for ``Dataset.map``.

    Notes
    -----
    Recording costs one Python call per map call: about 50-80 microseconds measured
    on a busy 2-core machine (``benchmarks/pipeline_speed.py``). Per batch of 64 that
    is about 2% of the optimized pipeline's time; per example it can be a quarter of
    a cheap element-wise graph map's time, so time batch-wise maps where you can.
    """
    import tensorflow as tf

    def record(start, end, tags):
        recorder.record_tags(stage, float(start), float(end) - float(start), tags)
        return np.int64(0)

    def in_graph(images, labels, tags):
        if recorder is None:
            return (*func(images, labels), tags)
        start = tf.timestamp()
        with tf.control_dependencies([start]):
            images, labels = tf.identity(images), tf.identity(labels)
        outputs = tuple(func(images, labels))
        with tf.control_dependencies(tf.nest.flatten(outputs)):
            end = tf.timestamp()
        recorded = tf.numpy_function(record, [start, end, tags], tf.int64, stateful=True)
        with tf.control_dependencies([recorded]):
            outputs = tf.nest.map_structure(tf.identity, outputs)
        return (*outputs, tags)

    def in_python_call(images, labels, tags):
        input_specs = (tf.TensorSpec.from_tensor(images), tf.TensorSpec.from_tensor(labels))
        output_structure = tf.function(func).get_concrete_function(*input_specs).structured_outputs
        output_specs = [tf.TensorSpec.from_tensor(tensor) for tensor in tf.nest.flatten(output_structure)]

        def body(images, labels, tags):
            start = now()
            outputs = tf.nest.flatten(func(images, labels))
            if recorder is not None:
                recorder.record_tags(stage, start, now() - start, tags.numpy())
            return outputs

        flat = tf.py_function(body, [images, labels, tags], Tout=[spec.dtype for spec in output_specs])
        for tensor, spec in zip(flat, output_specs, strict=True):
            tensor.set_shape(spec.shape)
        return (*tf.nest.pack_sequence_as(output_structure, flat), tags)

    return in_python_call if in_python else in_graph


# --------------------------------------------------------------------------- training


def timelined_benchmark(
    model,
    train_dataset,
    test_dataset,
    *,
    epochs: int,
    recorder: Recorder,
    optimizer=None,
    loss=None,
    train_steps: int | None = None,
    test_steps: int | None = None,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Train and test ``model`` epoch by epoch, recording Wait, Train, Test, Epoch and Teardown spans.

    The lab's ``timelined_benchmark`` as a custom loop: for every batch, the time
    spent in ``next(iterator)`` is a ``Wait`` span (the trainer idle, waiting for
    input) and the step itself is a ``Train`` or ``Test`` span. The step's loss is
    read back before the clock stops, so asynchronous devices cannot hide work.

    While epoch ``e`` runs, ``recorder.training_epoch`` is ``e``, so the pipeline's
    spans (Open, Read, maps) are stamped with the epoch in which they ran, also
    behind a ``cache()``; it is None again when the function returns.

    After each epoch's ``Epoch`` span, one ``Teardown`` span (with that epoch)
    covers deleting the epoch's two exhausted iterators: seconds for pipelines with
    ``cache()`` (see the comment in the loop), so it is neither input wait nor part
    of the epoch's time.

    Parameters
    ----------
    model : keras.Model
        Outputs class probabilities (softmax), as the lab's models do.
    train_dataset, test_dataset : tf.data.Dataset of ``(images, labels, tags)``
        Batched; labels are integer class indexes.
    epochs : int
    recorder : Recorder
    optimizer : keras optimizer, optional
        Default: a fresh ``keras.optimizers.Adam()``, so two runs from the same
        saved weights really start alike (the lab reuses one Adam, whose moment
        estimates carry over from the first run into the second).
    loss : keras loss, optional
        Default ``SparseCategoricalCrossentropy()`` on probabilities.
    train_steps, test_steps : int, optional
        Batches per epoch, for the progress bars only.
    progress : bool
        Show progress bars (on a terminal or in a notebook only; a log file gets
        the one line per epoch that is always printed).

    Returns
    -------
    list of dict, one per epoch: ``epoch``, ``seconds``, ``train_seconds``,
    ``test_seconds``, ``train_loss``, ``train_accuracy``, ``test_loss``,
    ``test_accuracy``, ``train_images``, ``images_per_second`` (training images per
    second of the training loop), ``input_wait_share`` (waiting time / epoch time)
    and ``teardown_seconds`` (deleting the epoch's iterators, after ``seconds``).
    """
    import keras
    import tensorflow as tf
    from tqdm.auto import tqdm

    from common import report

    # Bars on a terminal or in a notebook; in a log file the epoch lines below are enough.
    show_bars = progress and report.interactive()
    optimizer = optimizer if optimizer is not None else keras.optimizers.Adam()
    loss_function = loss if loss is not None else keras.losses.SparseCategoricalCrossentropy()
    train_loss, test_loss = keras.metrics.Mean(), keras.metrics.Mean()
    train_accuracy = keras.metrics.SparseCategoricalAccuracy()
    test_accuracy = keras.metrics.SparseCategoricalAccuracy()

    @tf.function(reduce_retracing=True)
    def train_step(images, labels):
        with tf.GradientTape() as tape:
            predictions = model(images, training=True)
            batch_loss = loss_function(labels, predictions)
        gradients = tape.gradient(batch_loss, model.trainable_variables)
        optimizer.apply(gradients, model.trainable_variables)
        train_loss.update_state(batch_loss)
        train_accuracy.update_state(labels, predictions)
        return batch_loss

    @tf.function(reduce_retracing=True)
    def test_step(images, labels):
        predictions = model(images, training=False)
        batch_loss = loss_function(labels, predictions)
        test_loss.update_state(batch_loss)
        test_accuracy.update_state(labels, predictions)
        return batch_loss

    def run_loop(dataset, step, stage, epoch, total):
        """One pass over ``dataset``; returns (images seen, seconds, seconds waiting, exhausted iterator)."""
        images_seen, waited = 0, 0.0
        bar = tqdm(total=total, desc=f"epoch {epoch + 1} {stage.lower()}", unit="batch",
                   disable=not show_bars, leave=False)
        batch_number = 0
        loop_start = wait_start = now()
        # Starting the pipeline (iter) and shutting it down after its last batch (the
        # iterator stops its worker threads) are waits for input too: Wait spans
        # cover all the loop's time that is not a step or this loop's bookkeeping.
        iterator = iter(dataset)
        while True:
            try:
                images, labels, tags = next(iterator)
            except StopIteration:
                break
            step_start = now()
            recorder.record("Wait", wait_start, step_start - wait_start, -1, epoch, batch_number)
            float(step(images, labels))  # reading the loss waits for the step to finish
            step_end = now()
            recorder.record_tags(stage, step_start, step_end - step_start, tags.numpy(), epoch, batch_number)
            waited += step_start - wait_start
            images_seen += int(images.shape[0])
            batch_number += 1
            bar.update(1)
            wait_start = now()
        end = now()
        recorder.record("Wait", wait_start, end - wait_start, -1, epoch, batch_number)
        waited += end - wait_start
        bar.close()
        # The caller deletes the exhausted iterator after the epoch (see Teardown below).
        return images_seen, now() - loop_start, waited, iterator

    # Trace both steps before the clock starts, so the first Train/Test span is a
    # step and not graph building (with a None batch size, one trace serves every batch).
    optimizer.build(model.trainable_variables)
    for step, dataset in ((train_step, train_dataset), (test_step, test_dataset)):
        image_spec, label_spec = dataset.element_spec[:2]
        step.get_concrete_function(
            tf.TensorSpec([None, *image_spec.shape[1:]], image_spec.dtype),
            tf.TensorSpec([None, *label_spec.shape[1:]], label_spec.dtype),
        )

    def run_epoch(epoch):
        """Train and test once; record the Epoch span, then the Teardown span; return the epoch's row."""
        epoch_start = now()
        for metric in (train_loss, train_accuracy, test_loss, test_accuracy):
            metric.reset_state()
        train_images, train_seconds, train_wait, train_iterator = run_loop(
            train_dataset, train_step, "Train", epoch, train_steps)
        _, test_seconds, test_wait, test_iterator = run_loop(test_dataset, test_step, "Test", epoch, test_steps)
        epoch_seconds = now() - epoch_start
        recorder.record("Epoch", epoch_start, epoch_seconds, -1, epoch, -1)
        # Deleting an iterator that has read a cache() can take seconds in TensorFlow 2.20
        # (8-11 s measured in lab04's full run, a 550 MB in-memory cache of CIFAR-10 crops;
        # 0 s without cache), whether or not anything waits for input. So the epoch's two
        # iterators are deleted after its Epoch span, in a Teardown span of their own:
        # the cost shows on the timeline without posing as input wait or epoch time.
        # Deleting them here rather than all after the last epoch frees their threads and
        # buffers at once and costs the same: without a model, on the 2-core machine, full
        # CIFAR-10-sized caches, 2-3 epochs, deleting per epoch took 0.5-1.4 s in all
        # (cache after the map) and 2.5-4.3 s (before it), deleting all at the end
        # 0.9-1.9 s and 2.7-4.9 s.
        teardown_start = now()
        del train_iterator, test_iterator
        teardown_seconds = now() - teardown_start
        recorder.record("Teardown", teardown_start, teardown_seconds, -1, epoch, -1)
        row = {
            "epoch": epoch + 1,
            "seconds": epoch_seconds,
            "train_seconds": train_seconds,
            "test_seconds": test_seconds,
            "train_loss": float(train_loss.result()),
            "train_accuracy": float(train_accuracy.result()),
            "test_loss": float(test_loss.result()),
            "test_accuracy": float(test_accuracy.result()),
            "train_images": train_images,
            "images_per_second": train_images / train_seconds if train_seconds > 0 else 0.0,
            "input_wait_share": (train_wait + test_wait) / epoch_seconds if epoch_seconds > 0 else 0.0,
            "teardown_seconds": teardown_seconds,
        }
        print(
            f"epoch {row['epoch']}: {row['seconds']:.1f} s, loss {row['train_loss']:.4f}, "
            f"accuracy {row['train_accuracy']:.4f}, test loss {row['test_loss']:.4f}, "
            f"test accuracy {row['test_accuracy']:.4f}, {row['images_per_second']:.0f} images/s, "
            f"input wait {100 * row['input_wait_share']:.1f}%, then {teardown_seconds:.1f} s teardown",
            flush=True,
        )
        return row

    history = []
    try:
        for epoch in range(epochs):
            recorder.set_training_epoch(epoch)
            history.append(run_epoch(epoch))
    finally:
        recorder.set_training_epoch(None)
    return history


# --------------------------------------------------------------------------- summary


def summarize(spans: Sequence[Span]) -> dict[str, Any]:
    """Per stage, how much work and how much wall time; and the trainer's input-wait share.

    Returns
    -------
    dict with
    ``wall_seconds``: first start to last end;
    ``stages``: per stage ``count``, ``busy_seconds`` (sum of durations: work done,
    which exceeds wall time when parallel calls overlap), ``covered_seconds`` (wall
    time during which at least one span of the stage ran), and ``epochs`` (the
    epochs it appears in);
    ``input_wait_share``: time the trainer spent in ``Wait`` spans divided by the
    time of its ``Epoch`` spans (``None`` without Epoch spans).
    """
    spans = list(spans)
    if not spans:
        return {"wall_seconds": 0.0, "stages": {}, "input_wait_share": None}
    first = min(span.start for span in spans)
    last = max(span.end for span in spans)
    stages = {}
    for stage in _stage_names(spans):
        mine = [span for span in spans if span.stage == stage]
        stages[stage] = {
            "count": len(mine),
            "busy_seconds": float(sum(span.duration for span in mine)),
            "covered_seconds": _covered_seconds(mine),
            "epochs": sorted({span.epoch for span in mine}),
        }
    epoch_seconds = stages.get("Epoch", {}).get("busy_seconds", 0.0)
    wait_seconds = stages.get("Wait", {}).get("busy_seconds", 0.0)
    return {
        "wall_seconds": last - first,
        "stages": stages,
        "input_wait_share": wait_seconds / epoch_seconds if epoch_seconds > 0 else None,
    }


def compare(runs: dict[str, dict]) -> tuple[list[dict[str, Any]], str]:
    """One row per pipeline run, as a list of dicts and as a fixed-width text table.

    Parameters
    ----------
    runs : dict
        ``{pipeline name: run}``, each run a dict with ``seconds`` (its epochs' time),
        ``epochs`` (the rows :func:`timelined_benchmark` returns) and ``timeline``
        (:func:`summarize` of its spans).

    Returns
    -------
    rows : list of dict
        ``pipeline``, ``total_s``, ``epoch_s`` (list), ``images_per_s`` (training
        images per second of training loop), ``test_accuracy`` (last epoch),
        ``input_wait_share``, and ``pipeline_stages_after_epoch_1``: which of Open,
        Read and Map ran in a later training epoch (none of them behind a cache
        placed after them).
    text : str
        The rows as a table, one line per pipeline under a header.
    """
    rows = []
    for name, run in runs.items():
        epochs, stages = run["epochs"], run["timeline"]["stages"]
        train_seconds = sum(row["train_seconds"] for row in epochs)
        rows.append({
            "pipeline": name,
            "total_s": run["seconds"],
            "epoch_s": [row["seconds"] for row in epochs],
            "images_per_s": sum(row["train_images"] for row in epochs) / train_seconds if train_seconds else 0.0,
            "test_accuracy": epochs[-1]["test_accuracy"],
            "input_wait_share": run["timeline"]["input_wait_share"],
            "pipeline_stages_after_epoch_1": sorted(
                stage for stage in ("Open", "Read", "Map")
                if any(epoch > 0 for epoch in stages.get(stage, {}).get("epochs", []))),
        })
    header = (f"{'pipeline':<10} {'total s':>8} {'per-epoch s':>18} {'images/s':>9} {'test acc':>9} "
              f"{'input wait':>10}")
    lines = [header, "-" * len(header)]
    for row in rows:
        per_epoch = " / ".join(f"{seconds:.1f}" for seconds in row["epoch_s"])
        wait = row["input_wait_share"]
        wait = f"{100 * wait:>9.1f}%" if wait is not None else f"{'-':>10}"
        lines.append(f"{row['pipeline']:<10} {row['total_s']:>8.1f} {per_epoch:>18} {row['images_per_s']:>9.0f} "
                     f"{row['test_accuracy']:>9.4f} {wait}")
    return rows, "\n".join(lines) + "\n"


def _covered_seconds(spans: Sequence[Span]) -> float:
    """Length of the union of the spans' intervals."""
    intervals = sorted((span.start, span.end) for span in spans)
    total, current_start, current_end = 0.0, None, None
    for start, end in intervals:
        if current_end is None or start > current_end:
            if current_end is not None:
                total += current_end - current_start
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    if current_end is not None:
        total += current_end - current_start
    return float(total)


def _stage_names(spans: Sequence[Span]) -> list[str]:
    present = {span.stage for span in spans}
    known = [stage for stage in STAGE_ORDER if stage in present]
    return known + sorted(present - set(known))


# --------------------------------------------------------------------------- drawing


def _label_text(values) -> str:
    """Indexes as a short label: ``[0, 1, 2, 3, 8]`` -> ``"0–3,8"``.

    More than two runs (a shuffled batch, say) become ``"lowest…highest (count)"``.
    """
    values = sorted(set(values))
    runs = []
    for value in values:
        if runs and value == runs[-1][1] + 1:
            runs[-1][1] = value
        else:
            runs.append([value, value])
    if len(runs) > 2:
        return f"{values[0]}…{values[-1]} ({len(values)})"
    return ",".join(str(first) if first == last else f"{first}–{last}" for first, last in runs)


def _one_run(examples: np.ndarray) -> bool:
    """Whether a batch's ``(source, epoch, index)`` tags are consecutive examples of one source pass."""
    indexes = np.sort(examples[:, 2])
    return bool(len(np.unique(examples[:, :2], axis=0)) == 1 and np.all(np.diff(indexes) == 1))


def _index_labels(spans: Sequence[Span], origin: float, seconds_per_point: float,
                  row_of: dict[str, int]) -> list[tuple[float, int, str]]:
    """``(x, row, text)`` for the index labels, neighbours that would overlap merged into one.

    A span's label is its index (the batch number for trainer spans), or for a span
    that covers a batch without an index (a batch-wise Map, a block Read) the range of
    its examples' indexes, if they are consecutive examples of one source (a shuffled
    batch gets no label). Within a row, a label that would start less than the
    previous label's width (estimated at 0.6 of the font size per character, plus a
    gap) after it joins that label instead.
    """
    by_row: dict[str, list[tuple[float, list[int]]]] = {}
    for span in spans:
        if span.index >= 0:
            values = [span.index]
        elif span.examples is not None and len(span.examples) and _one_run(span.examples):
            values = [int(value) for value in span.examples[:, 2]]
        else:
            continue  # no index, or a shuffled batch: its examples' indexes would say nothing
        by_row.setdefault(span.stage, []).append((span.start - origin, values))
    labels = []
    for stage, items in by_row.items():
        clusters: list[list] = []  # [x, set of values, text]
        for x, values in sorted(items, key=lambda item: item[0]):
            if clusters:
                last = clusters[-1]
                width = (0.6 * _LABEL_POINTS * len(last[2]) + 3) * seconds_per_point
                if x < last[0] + width:
                    last[1].update(values)
                    last[2] = _label_text(last[1])
                    continue
            clusters.append([x, set(values), _label_text(values)])
        labels.extend((x, row_of[stage], text) for x, _, text in clusters)
    return labels



def draw_timeline(
    timeline: Sequence[Span] | Recorder,
    title: str,
    min_width: float = 0.0,
    annotate: bool = False,
    path=None,
):
    """One row per stage, one bar per span, coloured by epoch, seconds on the x axis.

    Each (stage, epoch) pair is drawn as one ``broken_barh`` collection, so tens of
    thousands of spans draw in seconds. Overlapping bars (parallel calls) are
    translucent, so darker means more at once. Each row's total busy time is
    written at its right end, since bars keep their true length (a row of
    microsecond-long spans can look empty).

    Parameters
    ----------
    timeline : sequence of Span, or a Recorder
    title : str
    min_width : float
        The x axis spans at least this many seconds (the lab's ``min_width``), so
        two runs can be drawn on the same scale.
    annotate : bool
        Write each span's example index (batch number for trainer spans) on its
        bar; skipped, with a note, beyond a few hundred spans.
    path : path-like, optional
        Save the figure there as PNG (atomically) and close it.

    Returns
    -------
    matplotlib Figure (already closed when ``path`` is given).
    """
    import matplotlib

    if "matplotlib.pyplot" not in __import__("sys").modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.transforms import ScaledTranslation

    spans = timeline.spans() if isinstance(timeline, Recorder) else sorted(timeline, key=lambda s: s.start)
    stages = _stage_names(spans)
    figure, axis = plt.subplots(figsize=(14, 1.2 + 0.55 * max(len(stages), 1)))
    if not spans:
        axis.text(0.5, 0.5, "no spans recorded", ha="center", va="center", transform=axis.transAxes)
        axis.set_yticks([])
        axis.set_xlim(0, max(min_width, 1.0))
    else:
        origin = min(span.start for span in spans)
        wall = max(span.end for span in spans) - origin
        epochs = sorted({span.epoch for span in spans})
        colours = plt.get_cmap("tab10")
        row_of = {stage: row for row, stage in enumerate(stages)}
        x_limit = max(min_width, wall) * 1.01
        bars_by_row: dict[tuple[str, int], list[tuple[float, float]]] = {}
        for span in spans:
            bars_by_row.setdefault((span.stage, span.epoch), []).append((span.start - origin, span.duration))
        # Bars keep their true length, so a row of 20-microsecond Reads may look empty:
        # each row's total busy time is written at its right end.
        for stage, values in summarize(spans)["stages"].items():
            axis.text(1.005, row_of[stage], f"{_duration(values['busy_seconds'])} busy", fontsize=7,
                      va="center", ha="left", transform=axis.get_yaxis_transform())
        seen_epochs = set()
        for stage in stages:
            row = row_of[stage]
            for epoch in epochs:
                bars = bars_by_row.get((stage, epoch))
                if not bars:
                    continue
                label = f"epoch {epoch + 1}" if epoch not in seen_epochs else None
                seen_epochs.add(epoch)
                axis.broken_barh(bars, (row - 0.4, 0.8), facecolors=colours(epoch % 10),
                                 alpha=0.6, linewidth=0, label=label)
        if annotate and len(spans) <= _ANNOTATE_LIMIT:
            # Labels closer than their own width would print over each other ("0123"):
            # neighbours in a row share one label, "0–3", placed at the first of them.
            axis_points = figure.get_figwidth() * 72 * axis.get_position().width
            for x, row, text in _index_labels(spans, origin, x_limit / axis_points, row_of):
                axis.text(x, row, text, fontsize=_LABEL_POINTS, va="center", ha="left")
        elif annotate:
            axis.text(1.0, 1.01, f"{len(spans):,} spans: index labels left out", fontsize=8,
                      ha="right", va="bottom", transform=axis.transAxes)
        axis.set_yticks(range(len(stages)), stages)
        axis.set_xlim(0, x_limit)
        # The busy-time labels take the space right of the plot and the title its top, so
        # the epochs' legend goes below it, a fixed 30 points under the axes (below the
        # tick labels and the x-axis label, whatever the figure's height), 10 to a row.
        below = axis.transAxes + ScaledTranslation(0, -30 / 72, figure.dpi_scale_trans)
        axis.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), bbox_transform=below,
                    ncol=min(len(epochs), 10), fontsize=8, frameon=False)
    axis.set_ylim(len(stages) - 0.5 if stages else 0.5, -0.5)  # first stage on top
    axis.set_xlabel("time (s)")
    axis.set_title(title)
    axis.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    if path is not None:
        from common import report

        report.save_figure(figure, path)
    return figure


def _duration(seconds: float) -> str:
    """``0.000623`` -> ``"0.6 ms"``, ``2.345`` -> ``"2.35 s"``, ``1234.5`` -> ``"1234 s"``: short labels."""
    if seconds < 0.1:
        return f"{seconds * 1000:.2g} ms" if seconds < 0.01 else f"{seconds * 1000:.0f} ms"
    return f"{seconds:.3g} s" if seconds < 1000 else f"{seconds:.0f} s"
