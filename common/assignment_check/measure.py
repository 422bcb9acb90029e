"""The probe: measure a student's TODO functions themselves, in the student's own process, without training.

``python assignment_wildlife.py --probe`` runs the script up to the point where every
TODO function exists (the data split, the CSV files and the TFRecords written), then
:func:`probe` takes over with the script's globals and measures:

1. ``augment`` (TODO 1) on real photos: the crop's size and range, one image and a
   batch, independence within a batch and across draws;
2. each pipeline (TODOs 2, 3, 5): its ``tf.data`` graph (:mod:`.graph`), every epoch
   iterated (the whole split, the right shape, dtype and range, and for a cache,
   no decoding after epoch 1), and the time of an epoch of the pipeline alone, in
   interleaved trials (augmentation, optimized, TFRecord, again, ...) so that a busy
   machine slows every pipeline alike;
3. labels by content: with ``augment`` swapped for the centre crop, every image a
   pipeline yields is matched to the given naive pipeline's images (by a small
   thumbnail), and its label compared with that image's label in the CSV files;
4. that the TFRecord pipeline reads the records: run again on a copy of the records
   whose classes are permuted, its labels must follow the permutation.

The result is ``probe.json`` in the run's output folder, which
:func:`common.assignment_check.grade` turns into rubric lines.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

PROBED = ("augmentation", "optimized", "tfrecord")
TIMED_EPOCHS = 3  # per pipeline, after one untimed epoch that fills the caches and traces the maps
THUMBNAIL = 8  # images are matched by an 8x8 area-averaged thumbnail, compared by cosine similarity
# Thumbnails at least this similar show the same photo. Measured on the stand-in, 300 photos: the same photo
# 0.999-1.000 (also read back from TFRecords, resized and re-encoded), the most similar other photo 0.87-0.94.
SAME_IMAGE = 0.98
DECODING_STAGES = ("Open", "Read", "Decode")


def probe(script: dict) -> dict:
    """Measure the TODO functions found in ``script`` (the assignment's globals); returns what ``probe.json`` holds.

    Needs from the script: ``augment``, ``center_crop``, ``read_image``, ``build_pipeline``,
    ``data``, ``config``, ``CROP_SIZE``, ``IMAGE_SIZE``, ``TFRECORD_DIR``, ``tfrecords``,
    ``run`` and ``timeline``.
    """
    started = time.perf_counter()
    data, config = script["data"], script["config"]
    result: dict[str, Any] = {
        "graded": {"is_standin": data.is_standin, "limit": config.limit, "train_images": len(data.train_paths),
                   "test_images": len(data.test_paths), "image_size": script["IMAGE_SIZE"],
                   "crop_size": script["CROP_SIZE"], "batch_size": config.batch_size,
                   "shuffle_buffer": config.shuffle_buffer, "code_sha256": script["run"].code_sha256},
        "augment": check_augment(script),
        "pipelines": {},
    }
    built = {name: _build(script, name) for name in PROBED}
    for name, outcome in built.items():
        result["pipelines"][name] = outcome if "error" in outcome else {"structure": outcome.pop("structure")}
    result["timing"] = time_pipelines(script, {name: outcome for name, outcome in built.items()
                                               if "error" not in outcome}, result["pipelines"])
    result["labels"] = check_labels(script, result["pipelines"])
    result["seconds"] = time.perf_counter() - started
    return result


# --------------------------------------------------------------------------- TODO 1


def check_augment(script: dict) -> dict:
    """``augment`` called eagerly on a photo: one image, a batch of copies of it, and twice."""
    import tensorflow as tf

    augment, crop = script["augment"], script["CROP_SIZE"]
    data = script["data"]
    photo, _ = script["read_image"]((data.train_paths[0], data.train_labels[0]))
    labels = tf.zeros([4], tf.int64)
    try:
        batch = augment(tf.constant(np.stack([photo] * 4)), labels)[0].numpy()
        first = augment(tf.constant(photo), tf.constant(0, tf.int64))[0].numpy()
        second = augment(tf.constant(photo), tf.constant(0, tf.int64))[0].numpy()
    except NotImplementedError as error:
        return {"error": _not_written(error, "TODO 1: the augmentation map")}
    except Exception as error:  # a student's bug: reported on its line, not a crash of the rubric
        return {"error": f"augment fails: {type(error).__name__}: {_first_line(error)}"}
    arrays = [batch, first, second]
    distinct_in_batch = len({copy.tobytes() for copy in batch}) if batch.ndim == 4 else 0
    return {
        "batch_shape": list(batch.shape), "single_shape": list(first.shape),
        "dtype": str(batch.dtype), "expected_shape": [crop, crop, 3],
        "minimum": float(min(array.min() for array in arrays)), "maximum": float(max(array.max() for array in arrays)),
        "distinct_in_batch": distinct_in_batch, "batch_size": 4,
        "draws_differ": bool(first.shape != second.shape or not np.array_equal(first, second)),
    }


# --------------------------------------------------------------------------- TODOs 2, 3, 5


def _build(script: dict, name: str) -> dict:
    """``build_pipeline[name](recorder)``, its structure and the recorder; or why it could not be built."""
    from common.assignment_check.graph import pipeline_structure

    if name == "tfrecord" and script.get("tfrecords") is None:
        return {"error": "it needs TODO 4: the TFRecords"}
    recorder = script["timeline"].Recorder()
    try:
        train, test = script["build_pipeline"][name](recorder)
        for split, dataset in (("train", train), ("test", test)):
            if int(dataset.cardinality()) == -1:  # tf.data.INFINITE_CARDINALITY: its epoch would never end
                return {"error": f"the {split} pipeline repeats forever (a .repeat()?): one pass must be one epoch"}
        structure = {"train": _describe(pipeline_structure(train)), "test": _describe(pipeline_structure(test))}
    except NotImplementedError as error:
        return {"error": _not_written(error, f"the {name} pipeline")}
    except Exception as error:
        return {"error": f"building it fails: {type(error).__name__}: {_first_line(error)}"}
    return {"train": train, "test": test, "recorder": recorder, "structure": structure}


def _describe(structure) -> dict:
    return {"ops": structure.ops, "parallel": structure.parallel, "prefetch_at_end": structure.prefetch_at_end,
            "random_map": structure.random_map is not None,
            "cache_before_random_map": structure.upstream_of_random_map("CacheDataset"),
            "batch_before_random_map": structure.batch_before_random_map,
            "python_map": any(stage.python for stage in structure.chain)}


def time_pipelines(script: dict, built: dict, report: dict) -> dict:
    """One untimed epoch of each pipeline, then :data:`TIMED_EPOCHS` interleaved timed epochs.

    Every epoch is also checked: the number of images, their shape, dtype and range.
    Returns the seconds per timed epoch of each pipeline and their medians; fills
    ``report[name]`` with the checks.
    """
    expected = (script["CROP_SIZE"], script["CROP_SIZE"], 3)
    sizes = {"train": len(script["data"].train_paths), "test": len(script["data"].test_paths)}
    seconds: dict[str, list[float]] = {name: [] for name in built}
    epochs: dict[str, list[dict]] = {name: [] for name in built}
    freeing = []  # threads that free finished iterators, beside the next epoch
    for round_number in range(TIMED_EPOCHS + 1):
        for name, pipeline in built.items():
            if "failed" in report[name]:
                continue
            pipeline["recorder"].set_training_epoch(round_number)
            try:
                start = time.perf_counter()
                row = _one_epoch(pipeline["train"], expected, freeing)
                elapsed = time.perf_counter() - start
                if round_number == 0:
                    row["test"] = _one_epoch(pipeline["test"], expected, freeing)
            except Exception as error:  # noqa: BLE001  (any student's bug ends this pipeline's checks)
                report[name]["failed"] = f"iterating it fails: {type(error).__name__}: {_first_line(error)}"
                continue
            finally:
                pipeline["recorder"].set_training_epoch(None)
            epochs[name].append(row)
            if round_number > 0:
                seconds[name].append(elapsed)
    for thread in freeing:  # none may outlive the probe (the process exits soon after)
        thread.join()
    for name, pipeline in built.items():
        if "failed" in report[name]:
            continue
        later = {span.stage for span in pipeline["recorder"].spans() if span.epoch >= 1}
        # Epoch 2 iterates the training pipeline alone (epoch 1 the test pipeline too).
        map_spans = sum(1 for span in pipeline["recorder"].spans() if span.stage == "Map" and span.epoch == 1)
        report[name].update(epochs=epochs[name], expected_images=sizes, expected_shape=list(expected),
                            stages_after_epoch_1=sorted(later), map_spans_epoch_2=map_spans)
    medians = {name: statistics.median(values) for name, values in seconds.items() if values}
    return {"epochs_timed": TIMED_EPOCHS, "seconds": seconds, "median_seconds": medians,
            "order": "interleaved: one epoch of each pipeline in turn, after one untimed epoch of each"}


def _one_epoch(dataset, expected_shape, freeing: list) -> dict:
    """Iterate ``dataset`` once: images, their shapes, dtypes and value range.

    The finished iterator is freed in a background thread, appended to ``freeing``:
    freeing it can wait for TensorFlow's tuning thread, which is no part of an epoch.
    """
    import tensorflow as tf

    from common.timeline import free_in_background

    count, shapes, dtypes, low, high = 0, set(), set(), np.inf, -np.inf
    iterators = [iter(dataset)]  # freed in the background, outside the timed epoch
    for element in iterators[0]:
        images = element[0]
        count += int(images.shape[0])
        shapes.add(tuple(images.shape[1:]))
        dtypes.add(images.dtype.name)
        low = min(low, float(tf.reduce_min(images)))
        high = max(high, float(tf.reduce_max(images)))
    freeing.append(free_in_background(iterators))
    return {"images": count, "shapes": sorted(list(shape) for shape in shapes), "dtypes": sorted(dtypes),
            "minimum": low if count else None, "maximum": high if count else None,
            "right_shape": shapes == {tuple(expected_shape)}}


# --------------------------------------------------------------------------- labels by content


def check_labels(script: dict, report: dict) -> dict:
    """Labels by content for every pipeline that iterates, and the permuted-records test of the TFRecord pipeline."""
    names = [name for name in PROBED if "error" not in report[name] and "failed" not in report[name]]
    if not names:
        return {}
    augment = script["augment"]
    script["augment"] = script["center_crop"]  # deterministic crops: the images can be recognised
    try:
        references = {split: _thumbnails_and_labels(dataset)
                      for split, dataset in zip(("train", "test"), script["build_pipeline"]["naive"](
                          script["timeline"].Recorder()), strict=True)}
        found = {}
        for name in names:
            train, test = script["build_pipeline"][name](script["timeline"].Recorder())
            found[name] = {split: _agreement(references[split], _thumbnails_and_labels(dataset))
                           for split, dataset in (("train", train), ("test", test))}
        if "tfrecord" in names:
            found["tfrecord_permuted"] = _permuted_records(script, references)
    except Exception as error:  # noqa: BLE001
        return {"error": f"{type(error).__name__}: {_first_line(error)}"}
    finally:
        script["augment"] = augment
    return found


def _thumbnails_and_labels(dataset) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 3 * THUMBNAIL**2)`` unit-length centred thumbnails and ``(N,)`` labels of one pass."""
    import tensorflow as tf

    thumbnails, labels = [], []
    for element in dataset:
        images = tf.image.resize(tf.cast(element[0], tf.float32), (THUMBNAIL, THUMBNAIL), method="area")
        flat = tf.reshape(images, [tf.shape(images)[0], -1]).numpy().astype(np.float64)
        flat -= flat.mean(axis=1, keepdims=True)
        flat /= np.linalg.norm(flat, axis=1, keepdims=True) + 1e-9
        thumbnails.append(flat)
        labels.append(np.reshape(element[1].numpy(), [-1]))
    if not thumbnails:
        return np.zeros((0, 3 * THUMBNAIL**2)), np.zeros(0, np.int64)
    return np.concatenate(thumbnails), np.concatenate(labels).astype(np.int64)


def _agreement(reference, found, relabel=None) -> dict:
    """How many of ``found``'s images were recognised among ``reference``'s, and carry that image's label.

    ``relabel``: a mapping applied to the reference labels first (the permuted records).
    """
    reference_thumbnails, reference_labels = reference
    thumbnails, labels = found
    if not len(thumbnails) or not len(reference_thumbnails):
        return {"images": int(len(labels)), "recognised": 0, "same_label": 0}
    similarity = thumbnails @ reference_thumbnails.T
    nearest = similarity.argmax(axis=1)
    recognised = similarity[np.arange(len(nearest)), nearest] >= SAME_IMAGE
    expected = reference_labels[nearest]
    if relabel is not None:
        expected = np.array([relabel[int(label)] for label in expected])
    same = recognised & (expected == labels)
    return {"images": int(len(labels)), "recognised": int(recognised.sum()), "same_label": int(same.sum())}


def _permuted_records(script: dict, references: dict) -> dict:
    """Write the split again with every class's photos under the next class's name; read it with the student's code.

    A pipeline that reads the records yields the permuted labels; one that reads the
    photos through the CSV files (or anything else) yields the original ones.
    """
    data, run = script["data"], script["run"]
    classes = len(data.class_names)
    permutation = {label: (label + 1) % classes for label in range(classes)}
    folder = run.scratch("probe")
    source, records = folder / "permuted_split", folder / "permuted_records"
    import shutil

    shutil.rmtree(source, ignore_errors=True)
    for split, paths, labels in (("train", data.train_paths, data.train_labels),
                                 ("test", data.test_paths, data.test_labels)):
        for index, (path, label) in enumerate(zip(paths, labels, strict=True)):
            link = source / split / data.class_names[permutation[int(label)]] / f"{index:06d}{Path(path).suffix}"
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(Path(path).resolve())
    tool = [sys.executable, "-m", "tfrecord_tools", "write", str(source), str(records), "--max-side",
            str(script["IMAGE_SIZE"]), "--seed", str(script["config"].seed), "--overwrite", "--workers", "1",
            "--no-progress"]
    subprocess.run(tool, check=True, cwd=Path(sys.modules["tfrecord_tools"].__file__).resolve().parent.parent,
                   stdout=subprocess.DEVNULL)
    original = script["TFRECORD_DIR"]
    script["TFRECORD_DIR"] = records
    try:
        train, test = script["build_pipeline"]["tfrecord"](script["timeline"].Recorder())
        return {split: _agreement(references[split], _thumbnails_and_labels(dataset), relabel=permutation)
                for split, dataset in (("train", train), ("test", test))}
    finally:
        script["TFRECORD_DIR"] = original


def _not_written(error: BaseException, default: str) -> str:
    from common.assignment_check import not_written

    return not_written(error, default)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else ""
