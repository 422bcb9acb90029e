"""Timed datasets and maps: a source that records Open and Read spans, maps that record theirs."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from common.timeline.record import TAG_SPEC_SHAPE, Recorder, now


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


def as_written():
    """``tf.data.Options`` that switch tf.data's automatic rewrites off, to measure a pipeline as written.

    By default TensorFlow would quietly improve a naive pipeline (fuse a map and a
    batch into one asynchronous step, inject a prefetch): ``dataset.with_options(as_written())``.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_optimization.apply_default_optimizations = False
    options.experimental_optimization.map_and_batch_fusion = False
    options.experimental_optimization.inject_prefetch = False
    return options


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
        recorder. ``True``: the lab's ``map_decorator``: one Python call per element
        through ``tf.py_function``, timed in Python. That is how the lab's naive
        pipeline maps (and why it is slow). Inside it, ``func`` runs as one
        ``tf.function`` traced once per input signature, not op by op, so its
        memory stays flat; Python code in ``func`` (``np.random``, a counter) runs
        only when it is traced: draw random numbers with TensorFlow ops.

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

    # Called eagerly, every random op without an op seed (tf.random.uniform,
    # tf.image.random_flip_left_right) gets a fresh op seed per call once a global
    # seed is set, and TensorFlow caches a new ~35 KB kernel for each, forever: about
    # 190 KB per image for the lab's augmentation. Traced once, each op keeps one
    # kernel whose random stream advances from call to call, still seeded.
    traced = tf.function(func)

    def in_python_call(images, labels, tags):
        input_specs = (tf.TensorSpec.from_tensor(images), tf.TensorSpec.from_tensor(labels))
        concrete = traced.get_concrete_function(*input_specs)
        output_structure = concrete.structured_outputs
        output_specs = [tf.TensorSpec.from_tensor(tensor) for tensor in tf.nest.flatten(output_structure)]

        def body(images, labels, tags):
            start = now()
            outputs = tf.nest.flatten(concrete(images, labels))
            if recorder is not None:
                recorder.record_tags(stage, start, now() - start, tags.numpy())
            return outputs

        flat = tf.py_function(body, [images, labels, tags], Tout=[spec.dtype for spec in output_specs])
        for tensor, spec in zip(flat, output_specs, strict=True):
            tensor.set_shape(spec.shape)
        return (*tf.nest.pack_sequence_as(output_structure, flat), tags)

    return in_python_call if in_python else in_graph
