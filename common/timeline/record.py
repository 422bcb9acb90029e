"""Spans of work and the thread-safe recorder they go to: the timeline's data."""

from __future__ import annotations

import threading
import time
from typing import NamedTuple

import numpy as np

# Rows of the picture, top to bottom, in the order the work happens.
STAGE_ORDER = ("Open", "Read", "Decode", "Map", "Wait", "Train", "Test", "Epoch", "Teardown")
TAG_SPEC_SHAPE = (3,)  # (source, epoch, index)


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
