"""common.assignment_check: the rubric's parts one by one, on small inputs (the probe of whole scripts is in
tests/scripts/test_assignment.py).

Students' mistakes are written here as they would write them: an augmentation that
returns centre crops, one random window for a whole batch, a map that only takes
batches; pipelines without parallel calls, cache or prefetch; placeholder answers.
"""

import json
import types

import numpy as np
import pytest

from common import assignment_check
from common.assignment_check import answers, graph, measure, rubric

tf = pytest.importorskip("tensorflow")

CROP = 24
PHOTO = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)


def test_todo_names_are_found_inside_tensorflows_wrapping():
    error = NotImplementedError('in user code:\n\n    File "x.py", line 3\n\n    NotImplementedError: '
                                'TODO 1: the augmentation map\n')
    assert assignment_check.todo_name(error, "default") == "TODO 1: the augmentation map"
    assert assignment_check.not_written(NotImplementedError(), "the naive pipeline") == \
        "the naive pipeline is not written yet"
    assert assignment_check.not_written(NotImplementedError("it needs TODO 4: the TFRecords"), "x") == \
        "it needs TODO 4: the TFRecords"


# --------------------------------------------------------------------------- TODO 1


def script_with(augment):
    data = types.SimpleNamespace(train_paths=["photo.jpg"], train_labels=[0])
    return {"augment": augment, "CROP_SIZE": CROP, "data": data, "read_image": lambda row: (PHOTO, row[1])}


def good_augment(images, labels):
    single = images.shape.rank == 3
    batch = tf.cast(images[tf.newaxis] if single else images, tf.float32) / 255.0
    count = tf.shape(batch)[0]
    offsets = tf.random.uniform([count, 2], 0, 32 - CROP + 1, dtype=tf.int32)
    crops = tf.map_fn(lambda item: tf.slice(item[0], [item[1][0], item[1][1], 0], [CROP, CROP, 3]),
                      (batch, offsets), fn_output_signature=tf.float32)
    crops = tf.image.random_flip_left_right(crops)
    crops = tf.clip_by_value(crops + tf.random.uniform([count, 1, 1, 1], -0.1, 0.1), 0.0, 1.0)  # never twice alike
    return (crops[0] if single else crops), labels


def centre_crops(images, labels):
    return tf.image.resize_with_crop_or_pad(tf.cast(images, tf.float32) / 255.0, CROP, CROP), labels


def one_window_for_the_batch(images, labels):
    batch = tf.cast(images if images.shape.rank == 4 else images[tf.newaxis], tf.float32) / 255.0
    crops = tf.image.random_crop(batch, [tf.shape(batch)[0], CROP, CROP, 3])  # the same window for every image
    return (crops if images.shape.rank == 4 else crops[0]), labels


def batches_only(images, labels):
    return tf.image.random_crop(tf.cast(images, tf.float32) / 255.0, [4, CROP, CROP, 3]), labels


def lines_of(augment):
    return {line.id: line.status for line in rubric._augment_lines(measure.check_augment(script_with(augment)))}


def test_a_correct_augmentation_passes_every_line():
    assert lines_of(good_augment) == {"todo1.crops": "PASS", "todo1.per_image": "PASS", "todo1.per_draw": "PASS",
                                      "todo1.one_or_batch": "PASS"}


def test_centre_crops_are_no_augmentation():
    assert lines_of(centre_crops) == {"todo1.crops": "PASS", "todo1.per_image": "FAIL", "todo1.per_draw": "FAIL",
                                      "todo1.one_or_batch": "PASS"}


def test_one_random_window_for_a_whole_batch_is_not_independent_per_image():
    assert lines_of(one_window_for_the_batch)["todo1.per_image"] == "FAIL"


def test_a_map_that_only_takes_batches_fails_in_one_line_with_the_reason():
    lines = rubric._augment_lines(measure.check_augment(script_with(batches_only)))
    assert [line.id for line in lines] == ["todo1.written"] and lines[0].status == "FAIL"
    assert lines[0].measured.startswith("augment fails: ")


def test_pixels_left_in_0_255_fail_the_range():
    lines = lines_of(lambda images, labels: (good_augment(images, labels)[0] * 255.0, labels))
    assert lines["todo1.crops"] == "FAIL"


# --------------------------------------------------------------------------- the graph of a pipeline


def tagged(count=40):
    images = np.zeros((count, 32, 32, 3), np.uint8)
    return tf.data.Dataset.from_tensor_slices((images, np.arange(count) % 4, np.zeros((count, 3), np.int64)))


def augment3(images, labels, tags):
    return (*good_augment(images, labels), tags)


def crop3(images, labels, tags):
    return (*centre_crops(images, labels), tags)


def identity3(images, labels, tags):
    return images, labels, tags


def structure(dataset):
    described = measure._describe(graph.pipeline_structure(dataset))
    return {key: value for key, value in described.items() if key != "ops"}


def test_the_reference_shape_has_every_optimization():
    optimized = (tagged().map(identity3, num_parallel_calls=tf.data.AUTOTUNE).cache().shuffle(100).batch(8)
                 .map(augment3, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE))
    assert structure(optimized) == {"parallel": True, "prefetch_at_end": True, "random_map": True,
                                    "cache_before_random_map": True, "batch_before_random_map": True,
                                    "python_map": False}


def test_a_pipeline_without_parallel_calls_cache_or_prefetch_is_seen_as_such():
    plain = tagged().map(identity3).shuffle(100).batch(8).map(augment3)
    assert structure(plain) == {"parallel": False, "prefetch_at_end": False, "random_map": True,
                                "cache_before_random_map": False, "batch_before_random_map": True,
                                "python_map": False}


def test_a_cache_after_the_random_map_and_a_map_before_batch_are_told_apart():
    cached_late = tagged().batch(8).map(augment3, num_parallel_calls=2).cache().prefetch(1)
    assert not structure(cached_late)["cache_before_random_map"]
    per_image = tagged().cache().map(augment3, num_parallel_calls=2).batch(8).prefetch(1)
    assert structure(per_image)["cache_before_random_map"] and not structure(per_image)["batch_before_random_map"]


def test_a_cache_inside_a_captured_dataset_counts_and_options_at_the_end_are_skipped():
    from common import timeline

    photos = tf.data.Dataset.from_tensor_slices((np.zeros((16, 32, 32, 3), np.uint8), np.arange(16))).cache()
    records = (timeline.with_timeline_tags(photos, timeline.Recorder()).batch(4)
               .map(augment3, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)
               .with_options(tf.data.Options()))
    found = structure(records)
    assert found["cache_before_random_map"] and found["prefetch_at_end"] and found["parallel"]


def test_a_deterministic_map_is_no_random_map_and_python_maps_are_noticed():
    from common import timeline

    assert not structure(tagged().batch(8).map(crop3, num_parallel_calls=2))["random_map"]
    in_python = tagged().map(timeline.timed_map(lambda images, labels: good_augment(images, labels), None,
                                                in_python=True)).batch(8)
    assert structure(in_python)["python_map"]


# --------------------------------------------------------------------------- labels by content


def test_images_are_recognised_by_content_and_their_labels_compared():
    rng = np.random.default_rng(1)
    thumbnails = rng.normal(size=(6, 12))
    thumbnails /= np.linalg.norm(thumbnails, axis=1, keepdims=True)
    reference = (thumbnails, np.array([0, 1, 2, 0, 1, 2]))
    order = np.array([3, 0, 5, 1])
    found = (thumbnails[order], np.array([0, 0, 2, 1]))
    assert measure._agreement(reference, found) == {"images": 4, "recognised": 4, "same_label": 4}
    shuffled = (thumbnails[order], np.array([1, 2, 0, 0]))
    assert measure._agreement(reference, shuffled)["same_label"] == 0
    renamed = {0: 1, 1: 2, 2: 0}
    assert measure._agreement(reference, (thumbnails[order], np.array([1, 1, 0, 2])), renamed)["same_label"] == 4


# --------------------------------------------------------------------------- answers


MEASURED = {"epochs": 3, "train_images": 300, "test_images": 75, "is_standin": True, "tfrecords": None,
            "pipelines": {"augmentation": {"seconds": 94.7, "input_wait_share": 0.752, "test_accuracy": 0.2267},
                          "optimized": {"seconds": 31.6, "input_wait_share": 0.034, "test_accuracy": 0.2533}}}


@pytest.mark.parametrize(("text", "why"), [
    ("", "no answer"),
    ("asdf " * 13, "a placeholder"),
    ("TODO: write this later, once the run has finished and I have looked at the timelines and the table above.",
     "a placeholder"),
    ("the the the the pipeline pipeline pipeline the the the the pipeline pipeline pipeline the the the the time",
     "mostly repeated words"),
    ("The optimized pipeline was faster.", "too short"),
    ("The optimized pipeline was much faster than the augmentation pipeline because it decodes in parallel, "
     "caches the photos and prefetches the next batch while the model trains.", "cites none of the run's numbers"),
])
def test_non_answers_are_flagged_and_say_why(text, why):
    assert answers.review("time", text, MEASURED)["why"].startswith(why)


def test_a_real_answer_is_for_the_teacher_to_read_with_the_numbers_it_cites():
    text = ("The optimized pipeline took 31.6 s against 94.7 s for the augmentation pipeline, 3.0x faster: the "
            "trainer waited 75% of the time for the augmentation pipeline and 3.4% for the optimized one.")
    found = answers.review("time", text, MEASURED)
    assert "why" not in found and found["words"] > 20
    assert found["cited"] == ["31.6", "94.7", "3.0x", "75%", "3.4%"]
    assert "why" not in answers.review("summary", "The naive pipeline reads one photo at a time; the augmentation "
                                       "pipeline adds random crops and flips; the optimized pipeline decodes in "
                                       "parallel and caches; the TFRecord pipeline reads shards.", MEASURED)


def test_every_answer_line_is_read_or_flagged_never_passed():
    metrics = {"measured": MEASURED, "answers": {"time": "asdf " * 30, "accuracy": (
        "Augmentation reached 0.2267 against 0.2533 without it after 3 epochs: within the noise of 75 test "
        "images, so more epochs would be needed to see whether the harder training images help.")}}
    lines = {line.id: line for line in rubric._answer_lines(metrics)}
    assert lines["todo6.time"].status == "FAIL" and lines["todo6.accuracy"].status == "READ"
    assert "0.2267" in lines["todo6.accuracy"].measured
    assert {line.status for line in lines.values()} <= {"FAIL", "READ"}


# --------------------------------------------------------------------------- a folder's own numbers


def test_a_folder_without_a_probe_grades_only_its_own_numbers_and_says_so(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({
        "status": "complete", "parts": {"naive": "complete", "augmentation": "skipped", "tfrecords": "skipped"},
        "skipped": {"augmentation": "TODO 2 not written yet: the augmentation pipeline",
                    "tfrecords": "TODO 4 not written yet: the TFRecords"},
        "results": {"naive": {"seconds": 4.0, "input_wait_share": 0.4, "test_accuracy": 0.1,
                              "epochs": [{"seconds": 4.0, "input_wait_share": 0.4, "test_accuracy": 0.1}]}},
        "answers": {"summary": "too short"},
    }))
    (tmp_path / "results.md").write_text(assignment_check.results_table(assignment_check.measurements(
        {"naive": {"seconds": 4.0, "epochs": [{"seconds": 4.0}], "input_wait_share": 0.4, "test_accuracy": 0.1,
                   "images_per_second": 10.0, "stages": {}}}, epochs=1, train_images=40, test_images=10,
        is_standin=True, tfrecords=None)))
    lines = {line.id: line for line in assignment_check.grade(tmp_path)}
    assert lines["run.finished"].status == "PASS" and lines["run.naive"].status == "PASS"
    assert lines["run.augmentation"].measured == "TODO 2 not written yet: the augmentation pipeline"
    assert {lines[f"{todo}.measured"].status for todo in ("todo1", "todo2", "todo3", "todo5")} == {"SKIP"}
    assert lines["todo4.verify"].status == "FAIL" and lines["todo6.summary"].status == "FAIL"
    assert lines["run.consistent"].status == "PASS"
    text = assignment_check.format_rubric(assignment_check.grade(tmp_path), tmp_path)
    assert "4 section(s) not measured (run python assignment_wildlife.py --check)" in text.splitlines()[-1]


def test_rubric_of_a_missing_folder_says_to_run_first(tmp_path):
    assert assignment_check.main([str(tmp_path)]) == 1


def test_a_check_always_starts_fresh_probe_then_training(monkeypatch, tmp_path, capsys):
    import subprocess

    commands = []
    monkeypatch.setattr(subprocess, "run", lambda command, **kwargs: commands.append(command) or
                        types.SimpleNamespace(returncode=0))
    config = types.SimpleNamespace(data_dir=None, data="auto")
    assert rubric.run_check("assignment_wildlife.py", config, out=tmp_path) == 1  # nothing was written: FAIL lines
    assert len(commands) == 2 and all("--fresh" in command for command in commands)
    assert "--probe" in commands[0] and "--probe" not in commands[1]
    assert commands[0][commands[0].index("--out") + 1] == str(tmp_path / "probe")


def test_a_pipeline_that_repeats_forever_is_refused_before_it_is_iterated():
    from common import timeline

    forever = {"timeline": timeline, "tfrecords": {},
               "build_pipeline": {"optimized": lambda recorder: (tagged().batch(8).repeat(), tagged().batch(8))}}
    assert "the train pipeline repeats forever" in measure._build(forever, "optimized")["error"]
    not_written = {"timeline": timeline, "tfrecords": None, "build_pipeline": {}}
    assert measure._build(not_written, "tfrecord") == {"error": "it needs TODO 4: the TFRecords"}
