"""Tests for common/timeline.py: spans complete and exact under parallelism, drawing, summary."""

from __future__ import annotations

import threading
from collections import Counter

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from common import timeline  # noqa: E402
from common.timeline import drawing  # noqa: E402

EXAMPLES_PER_FILE = 24
FILES = 3
IMAGE_SPEC = (tf.TensorSpec((4, 4, 3), tf.uint8), tf.TensorSpec((), tf.int64))


def _fake_files(tmp_path, count=FILES):
    """``count`` tiny .npy files, each holding EXAMPLES_PER_FILE 4x4x3 images whose pixels encode (file, row)."""
    paths = []
    for number in range(count):
        images = np.zeros((EXAMPLES_PER_FILE, 4, 4, 3), dtype=np.uint8)
        images[:, 0, 0, 0] = number
        images[:, 0, 0, 1] = np.arange(EXAMPLES_PER_FILE)
        path = tmp_path / f"part{number}.npy"
        np.save(path, images)
        paths.append(str(path))
    return paths


def _open_file(path):
    images = np.load(path)
    return [(image, np.int64(image[0, 0, 1])) for image in images]


def _read_item(item):
    return item


def _open_blocks(path):
    images = np.load(path)
    return [(images[start:start + 5], images[start:start + 5, 0, 0, 1].astype(np.int64))
            for start in range(0, len(images), 5)]


def _add_one(images, labels):
    return tf.cast(images, tf.float32) + 1.0, labels


def _pipeline_elements(dataset):
    return [tuple(np.asarray(part) for part in element) for element in dataset.as_numpy_iterator()]


@pytest.mark.parametrize("in_python", [False, True])
def test_parallel_map_and_interleave_record_every_element_once_in_order(tmp_path, in_python):
    recorder = timeline.Recorder()
    paths = _fake_files(tmp_path)
    source = timeline.time_measured_dataset(paths, _open_file, _read_item, IMAGE_SPEC, recorder,
                                            interleave=True)
    mapped = source.map(timeline.timed_map(_add_one, recorder, in_python=in_python),
                        num_parallel_calls=4, deterministic=False).prefetch(4)
    elements = _pipeline_elements(mapped)

    assert len(elements) == FILES * EXAMPLES_PER_FILE
    spans = recorder.spans()
    counts = Counter(span.stage for span in spans)
    assert counts == {"Open": FILES, "Read": FILES * EXAMPLES_PER_FILE, "Map": FILES * EXAMPLES_PER_FILE}
    # Every element's Read and Map are present exactly once, tagged with its own identity.
    for stage in ("Read", "Map"):
        keys = Counter((span.source, span.epoch, span.index) for span in spans if span.stage == stage)
        assert set(keys.values()) == {1}
        assert {index for _, _, index in keys} == set(range(EXAMPLES_PER_FILE))
    # The tags travel with the data: pixel (0, 0, 1) holds the row number, plus one after the map.
    for image, label, tag in elements:
        assert int(tag[2]) == int(label) == int(image[0, 0, 1]) - 1
    # Within each element: Open before Read before Map, none overlapping the next.
    by_element = {}
    for span in spans:
        if span.stage != "Open":
            by_element.setdefault((span.source, span.index), {})[span.stage] = span
    opens = {span.source: span for span in spans if span.stage == "Open"}
    for (source, _), stages in by_element.items():
        assert opens[source].end <= stages["Read"].start + 1e-6
        assert stages["Read"].end <= stages["Map"].start + 1e-6
        assert stages["Map"].duration >= 0


def test_batch_wise_map_records_one_span_covering_every_example(tmp_path):
    recorder = timeline.Recorder()
    paths = _fake_files(tmp_path, count=2)
    source = timeline.time_measured_dataset(paths, _open_blocks, _read_item, IMAGE_SPEC, recorder,
                                            items_are_blocks=True)
    batches = source.batch(8).map(timeline.timed_map(_add_one, recorder), num_parallel_calls=2)
    elements = _pipeline_elements(batches)

    assert sum(len(labels) for _, labels, _ in elements) == 2 * EXAMPLES_PER_FILE
    maps = [span for span in recorder.spans() if span.stage == "Map"]
    assert len(maps) == len(elements) == 6
    covered = Counter(tuple(row) for span in maps for row in span.examples)
    assert len(covered) == 2 * EXAMPLES_PER_FILE and set(covered.values()) == {1}
    reads = [span for span in recorder.spans() if span.stage == "Read"]
    assert sum(len(span.examples) for span in reads) == 2 * EXAMPLES_PER_FILE


def test_cache_after_map_records_no_pipeline_stages_in_the_second_pass(tmp_path):
    recorder = timeline.Recorder()
    source = timeline.time_measured_dataset(_fake_files(tmp_path, 1), _open_file, _read_item, IMAGE_SPEC,
                                            recorder)
    cached = source.map(timeline.timed_map(_add_one, recorder)).cache()
    first = _pipeline_elements(cached)
    after_first = len(recorder)
    second = _pipeline_elements(cached)
    assert len(recorder) == after_first == 1 + 2 * EXAMPLES_PER_FILE
    assert [int(tag[2]) for *_, tag in first] == [int(tag[2]) for *_, tag in second]


def test_each_pass_over_a_source_gets_the_next_epoch_number(tmp_path):
    recorder = timeline.Recorder()
    source = timeline.time_measured_dataset(_fake_files(tmp_path, 2), _open_file, _read_item, IMAGE_SPEC,
                                            recorder)
    for _ in range(3):
        _pipeline_elements(source)
    opens = [span for span in recorder.spans() if span.stage == "Open"]
    assert sorted((span.source, span.epoch) for span in opens) == [(0, 0), (0, 1), (0, 2),
                                                                   (1, 0), (1, 1), (1, 2)]
    # Outside training the span's epoch is the pass over the source, also kept as data_epoch.
    assert all(span.data_epoch == span.epoch for span in recorder.spans())


def test_without_a_recorder_the_data_is_the_same(tmp_path):
    paths = _fake_files(tmp_path, 2)
    plain = timeline.time_measured_dataset(paths, _open_file, _read_item, IMAGE_SPEC, None)
    plain = plain.map(timeline.timed_map(_add_one, None))
    recorder = timeline.Recorder()
    timed = timeline.time_measured_dataset(paths, _open_file, _read_item, IMAGE_SPEC, recorder)
    timed = timed.map(timeline.timed_map(_add_one, recorder))
    for (image_a, label_a, tag_a), (image_b, label_b, tag_b) in zip(
        _pipeline_elements(plain), _pipeline_elements(timed), strict=True
    ):
        np.testing.assert_array_equal(image_a, image_b)
        assert label_a == label_b
        np.testing.assert_array_equal(tag_a, tag_b)


def test_recorder_keeps_every_span_from_many_threads():
    recorder = timeline.Recorder()

    def work(thread):
        for index in range(2000):
            recorder.record("Map", timeline.now(), 0.0, thread, 0, index)

    threads = [threading.Thread(target=work, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    keys = {(span.source, span.index) for span in recorder.spans()}
    assert len(recorder) == len(keys) == 8 * 2000


def test_summarize_busy_covered_and_input_wait_share():
    spans = [
        timeline.Span("Map", 0.0, 2.0), timeline.Span("Map", 1.0, 2.0),  # overlap: busy 4, covered 3
        timeline.Span("Wait", 0.0, 1.0, epoch=0), timeline.Span("Train", 1.0, 3.0, epoch=0),
        timeline.Span("Epoch", 0.0, 4.0, epoch=0),
    ]
    summary = timeline.summarize(spans)
    assert summary["stages"]["Map"]["busy_seconds"] == pytest.approx(4.0)
    assert summary["stages"]["Map"]["covered_seconds"] == pytest.approx(3.0)
    assert summary["input_wait_share"] == pytest.approx(0.25)
    assert summary["wall_seconds"] == pytest.approx(4.0)
    assert timeline.summarize([])["input_wait_share"] is None


def _png_ok(path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_draw_timeline_empty_tiny_and_ten_thousand_spans(tmp_path):
    timeline.draw_timeline([], "empty", path=tmp_path / "empty.png")
    _png_ok(tmp_path / "empty.png")

    tiny = [timeline.Span("Read", 0.0, 0.1, 0, 0, 0), timeline.Span("Map", 0.1, 0.2, 0, 0, 0),
            timeline.Span("Train", 0.3, 0.5, 0, 0, 0), timeline.Span("Epoch", 0.0, 1.0, -1, 0)]
    timeline.draw_timeline(tiny, "tiny", min_width=2, annotate=True, path=tmp_path / "tiny.png")
    _png_ok(tmp_path / "tiny.png")

    rng = np.random.default_rng(0)
    starts = np.sort(rng.uniform(0, 100, 10_000))
    stages = ["Open", "Read", "Map", "Wait", "Train", "Test"]
    many = [timeline.Span(stages[number % 6], float(start), 0.005, 0, number % 2, number)
            for number, start in enumerate(starts)]
    timeline.draw_timeline(many, "many", annotate=True, path=tmp_path / "many.png")
    _png_ok(tmp_path / "many.png")


def test_timelined_benchmark_records_wait_train_test_epoch_and_metrics():
    import keras

    keras.utils.set_random_seed(0)
    images = np.random.default_rng(0).normal(size=(40, 4, 4, 3)).astype("float32")
    labels = (np.arange(40) % 2).astype("int64")
    tags = np.stack([np.zeros(40), np.zeros(40), np.arange(40)], axis=1).astype("int64")
    dataset = tf.data.Dataset.from_tensor_slices((images, labels, tags)).batch(16)
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(2, activation="softmax")])
    recorder = timeline.Recorder()
    history = timeline.timelined_benchmark(model, dataset, dataset, epochs=2, recorder=recorder,
                                           progress=False)
    assert [row["epoch"] for row in history] == [1, 2]
    assert all(row["train_images"] == 40 and 0 <= row["input_wait_share"] < 1 for row in history)
    # Epoch 1's iterators are freed beside epoch 2; the loop waits only for the last epoch's.
    assert history[0]["teardown_seconds"] == 0.0 and history[1]["teardown_seconds"] >= 0
    counts = Counter((span.stage, span.epoch) for span in recorder.spans())
    assert counts[("Train", 0)] == counts[("Test", 1)] == 3
    # One Wait per batch, plus one per loop for the end of the data (3 + 1 train, 3 + 1 test).
    assert counts[("Wait", 0)] == 8 and counts[("Epoch", 1)] == 1
    train_examples = [row for span in recorder.spans() if span.stage == "Train" and span.epoch == 0
                      for row in span.examples]
    assert sorted(int(row[2]) for row in train_examples) == list(range(40))


def _tiny_classifier(classes):
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten(),
                             keras.layers.Dense(classes, activation="softmax")])


@pytest.mark.parametrize("cache", ["before-map", "after-map"])
def test_spans_behind_a_cache_carry_the_training_epoch_in_which_they_ran(tmp_path, cache):
    """A map after cache() runs in every epoch on pass-0 data: epoch is the training epoch, data_epoch 0."""
    recorder = timeline.Recorder()
    source = timeline.time_measured_dataset(_fake_files(tmp_path, 1), _open_file, _read_item, IMAGE_SPEC,
                                            recorder)
    timed = timeline.timed_map(_add_one, recorder)
    if cache == "before-map":
        train = source.cache().batch(8).map(timed)
    else:
        train = source.batch(8).map(timed).cache()
    test = tf.data.Dataset.from_tensor_slices((np.zeros((4, 4, 4, 3), np.float32), np.zeros(4, np.int64),
                                               np.zeros((4, 3), np.int64))).batch(4)
    timeline.timelined_benchmark(_tiny_classifier(EXAMPLES_PER_FILE), train, test, epochs=2, recorder=recorder,
                                 progress=False)

    assert recorder.training_epoch is None
    spans = recorder.spans()
    epoch_spans = {span.epoch: span for span in spans if span.stage == "Epoch"}
    maps = [span for span in spans if span.stage == "Map"]
    batches = EXAMPLES_PER_FILE // 8
    expected_epochs = [0, 1] if cache == "before-map" else [0]
    assert sorted(Counter(span.epoch for span in maps).items()) == [(epoch, batches) for epoch in expected_epochs]
    for span in maps:  # each Map span ran inside the Epoch span it is stamped with, on pass-0 data
        assert epoch_spans[span.epoch].start <= span.start <= span.end <= epoch_spans[span.epoch].end + 1e-6
        assert span.data_epoch == 0 and set(span.examples[:, 1]) == {0}
    # The source sits before the cache either way: it is read once, in epoch 1.
    assert {(span.stage, span.epoch, span.data_epoch) for span in spans if span.stage in ("Open", "Read")} == {
        ("Open", 0, 0), ("Read", 0, 0)}
    # The trainer's spans: its own epoch; Train keeps the data's pass (0, cached) as data_epoch.
    trains = [span for span in spans if span.stage == "Train"]
    assert Counter(span.epoch for span in trains) == {0: batches, 1: batches}
    assert {span.data_epoch for span in trains} == {0}
    assert {span.data_epoch for span in spans if span.stage in ("Wait", "Epoch", "Teardown")} == {-1}
    # One Teardown per epoch, after its Epoch span.
    teardowns = {span.epoch: span for span in spans if span.stage == "Teardown"}
    assert sorted(teardowns) == [0, 1]
    assert all(teardowns[epoch].start >= epoch_spans[epoch].end - 1e-6 for epoch in (0, 1))
    summary = timeline.summarize(spans)
    assert summary["stages"]["Map"]["epochs"] == expected_epochs


def test_stage_order_puts_decode_between_read_and_map():
    spans = [timeline.Span(stage, 0.0, 1.0) for stage in ("Map", "Custom", "Decode", "Read", "Train")]
    assert list(timeline.summarize(spans)["stages"]) == ["Read", "Decode", "Map", "Train", "Custom"]


def test_index_labels_of_close_spans_merge_into_one_range_and_far_ones_stay_apart():
    """The lab's test_batch picture: reads 0-7 start within microseconds; their labels must not overprint."""
    spans = [timeline.Span("Read", 0.004 + 1e-6 * index, 1e-6, 0, 0, index) for index in range(8)]
    spans += [timeline.Span("Read", 0.105 + 1e-6 * index, 1e-6, 0, 0, index) for index in range(8, 12)]
    batch = np.array([[0, 0, index] for index in range(4)])
    spans += [timeline.Span("Map", 0.004, 1e-4, 0, 0, -1, batch, 0)]  # batch-wise: labelled by its examples
    shuffled = np.array([[0, 0, 7], [1, 0, 2], [0, 0, 30]])
    spans += [timeline.Span("Map", 0.2, 1e-4, 0, 0, -1, shuffled, 0)]  # a shuffled batch: no label
    spans += [timeline.Span("Train", 0.005 + 0.1 * step, 0.1, 0, 0, step) for step in range(3)]
    row_of = {"Read": 0, "Map": 1, "Train": 2}
    labels = drawing._index_labels(spans, 0.0, seconds_per_point=0.31 / 780, row_of=row_of)
    assert sorted((row, text) for _, row, text in labels) == [
        (0, "0–7"), (0, "8–11"), (1, "0–3"), (2, "0"), (2, "1"), (2, "2")]
    # Shuffled indexes that run together say how many they are, not a long list.
    assert drawing._label_text([5, 1, 9, 3]) == "1…9 (4)"
    assert drawing._label_text([0, 1, 2, 3, 8]) == "0–3,8"


def test_compare_makes_one_row_and_one_table_line_per_pipeline():
    epochs = [{"seconds": 2.0, "train_seconds": 1.5, "train_images": 300, "test_accuracy": 0.25}]
    stages = {"Open": {"epochs": [0]}, "Map": {"epochs": [0, 1]}}
    rows, text = timeline.compare({"naive": {"seconds": 2.0, "epochs": epochs,
                                             "timeline": {"stages": stages, "input_wait_share": 0.5}}})
    assert rows == [{"pipeline": "naive", "total_s": 2.0, "epoch_s": [2.0], "images_per_s": 200.0,
                     "test_accuracy": 0.25, "input_wait_share": 0.5, "pipeline_stages_after_epoch_1": ["Map"]}]
    assert text.splitlines()[2].split() == ["naive", "2.0", "2.0", "200", "0.2500", "50.0%"]
