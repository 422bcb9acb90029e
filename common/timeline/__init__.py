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

from common.timeline.benchmark import free_in_background, timelined_benchmark
from common.timeline.drawing import draw_timeline
from common.timeline.record import STAGE_ORDER, TAG_SPEC_SHAPE, Recorder, Span, now
from common.timeline.sources import as_written, time_measured_dataset, timed_map, with_timeline_tags
from common.timeline.summary import compare, stage_names, summarize

__all__ = ["STAGE_ORDER", "TAG_SPEC_SHAPE", "Recorder", "Span", "as_written", "compare", "draw_timeline",
           "free_in_background", "now",
           "stage_names", "summarize", "time_measured_dataset", "timed_map", "timelined_benchmark",
           "with_timeline_tags"]
