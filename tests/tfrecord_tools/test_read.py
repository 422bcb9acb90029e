"""load() and parse_example(): images and labels as written, order, arguments, cache and tf.distribute."""

import hashlib
import io
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

import tfrecord_tools

from fakes import REPO_ROOT, image_bytes, make_class_folder, write_file, write_records

tf = pytest.importorskip("tensorflow")


def order(dataset):
    return [(int(label), hashlib.sha256(image.tobytes()).hexdigest()) for images, labels in dataset
            for image, label in zip(images.numpy(), labels.numpy(), strict=True)]


def map_determinism(dataset):
    """The ``deterministic`` attribute of every parallel map in the dataset's graph."""
    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString(dataset._as_serialized_graph().numpy())
    return [node.attr["deterministic"].s.decode() for node in graph.node if node.op.startswith("ParallelMap")]


def digest(image):
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()


def source_pixels(source):
    """{sha256 of decoded pixels: label} for every source JPEG, decoded by TensorFlow."""
    labels = {"cat": 0, "dog": 1, "fox": 2}
    return {
        digest(tf.io.decode_jpeg(path.read_bytes(), channels=3).numpy()): labels[path.parent.name]
        for path in sorted(source.glob("*/*.jpg"))
    }


def test_load_yields_every_image_with_its_label(written):
    source, out = written
    expected = source_pixels(source)
    seen = {}
    for split in ("train", "test"):
        dataset = tfrecord_tools.load(out, split, batch_size=4, shuffle=False)
        assert dataset.cardinality().numpy() == (3 if split == "train" else 2)
        for images, labels in dataset:
            assert images.dtype == tf.uint8 and images.shape[1:] == (12, 16, 3)
            for image, label in zip(images.numpy(), labels.numpy(), strict=True):
                seen[digest(image)] = int(label)
    assert seen == expected


def test_load_crops_resizes_and_scales(written):
    _, out = written
    dataset = tfrecord_tools.load(out, "train", batch_size=None, crop="center", image_size=(8, 8), dtype="float32")
    image, label = next(iter(dataset))
    assert image.shape == (8, 8, 3) and image.dtype == tf.float32
    as_uint8 = tfrecord_tools.load(out, "train", batch_size=None, shuffle=False, dtype="uint8")
    as_float = tfrecord_tools.load(out, "train", batch_size=None, shuffle=False, dtype="float32")
    for (uint8_image, _), (float_image, _) in zip(as_uint8.take(3), as_float.take(3), strict=True):
        assert np.array_equal(float_image.numpy(), uint8_image.numpy().astype(np.float32) / 255.0)  # not 0-255
    cropped = tfrecord_tools.load(out, "train", batch_size=2, crop=(2, 3, 5, 6), shuffle=False)
    assert next(iter(cropped))[0].shape == (2, 5, 6, 3)
    center = tfrecord_tools.load(out, "train", batch_size=2, crop="center")
    assert next(iter(center))[0].shape == (2, 12, 12, 3)


def test_decoded_bytes_match_pillow(written):
    """TensorFlow's decoder and Pillow (used by verify) agree on the stored JPEGs."""
    _, out = written
    records = tf.data.TFRecordDataset(tfrecord_tools.shard_files(out, "train")).map(tfrecord_tools.parse_example)
    for features in records.take(3):
        encoded = features["image/encoded"].numpy()
        ours = np.asarray(Image.open(io.BytesIO(encoded)).convert("RGB"))
        # TensorFlow's default IDCT (INTEGER_FAST) differs from libjpeg's ISLOW by a few levels on noise.
        assert np.abs(tf.io.decode_jpeg(encoded, channels=3).numpy().astype(int) - ours).max() <= 8


def test_load_refuses_mixed_sizes_without_image_size(tmp_path):
    source = make_class_folder(tmp_path / "src", classes=("a", "b"), per_class=2)
    write_file(source / "a" / "wide.jpg", image_bytes(size=(40, 10), seed=9))
    write_records(source, tmp_path / "out", test_fraction=0)
    with pytest.raises(ValueError, match="image_size"):
        tfrecord_tools.load(tmp_path / "out", "train")
    images, _ = next(iter(tfrecord_tools.load(tmp_path / "out", "train", batch_size=5, image_size=(10, 10))))
    assert images.shape == (5, 10, 10, 3)


def test_load_unknown_split_and_unfinished_shards(written, tmp_path):
    _, out = written
    with pytest.raises(tfrecord_tools.TFRecordToolsError, match="'validation' is not in"):
        tfrecord_tools.load(out, "validation")
    assert all(".incomplete" not in path for path in tfrecord_tools.shard_files(out, "train"))


def test_load_refuses_a_crop_window_that_does_not_fit(written):
    _, out = written  # images are 12 high, 16 wide
    with pytest.raises(ValueError, match=r"smallest are 12 px high and 16 px wide.*y \+ height must be <= 12"):
        tfrecord_tools.load(out, "train", crop=(2, 0, 11, 16))
    with pytest.raises(ValueError, match="height, width >= 1"):
        tfrecord_tools.load(out, "train", crop=(0, 0, 0, 4))
    with pytest.raises(ValueError, match="y, x >= 0"):
        tfrecord_tools.load(out, "train", crop=(-1, 0, 4, 4))
    images, _ = next(iter(tfrecord_tools.load(out, "train", crop=(0, 0, 12, 16), batch_size=2)))
    assert images.shape == (2, 12, 16, 3)  # the whole image is the largest window


# B3
def test_a_seeded_shuffle_gives_the_same_order_every_build(mixed):
    def build():
        return tfrecord_tools.load(mixed, "train", batch_size=8, image_size=(16, 16), shuffle=True, seed=123)

    assert "false" not in map_determinism(build())
    first = order(build())
    assert len(first) == 60
    assert all(order(build()) == first for _ in range(3))
    unseeded = tfrecord_tools.load(mixed, "train", batch_size=8, image_size=(16, 16), shuffle=True)
    assert "false" in map_determinism(unseeded)  # without a seed, order is not promised: the faster map


def test_shuffled_and_cached_epochs_hold_the_same_images(written):
    _, out = written
    dataset = tfrecord_tools.load(out, "train", batch_size=None, shuffle=True, seed=1, cache=True)
    epochs = [[digest(image.numpy()) for image, _ in dataset] for _ in range(2)]
    assert sorted(epochs[0]) == sorted(epochs[1]) and len(epochs[0]) == 12
    assert epochs[0] != epochs[1]  # reshuffled each epoch, from the cache


def test_the_autotuner_is_off_and_a_user_may_turn_it_on(written):
    """It left a core idle on small machines; turning it on again changes the speed, not the contents."""
    _, out = written
    default = tfrecord_tools.load(out, "train", batch_size=None, shuffle=False)
    assert default.options().autotune.enabled is False
    contents = [digest(image.numpy()) for image, _ in default]
    options = tf.data.Options()
    options.autotune.enabled = True
    tuned = default.with_options(options)
    assert tuned.options().autotune.enabled is True
    assert [digest(image.numpy()) for image, _ in tuned] == contents  # same order too: deterministic


# B7
@pytest.mark.parametrize(("arguments", "error", "message"), [
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"batch_size": True}, TypeError, "batch_size"),
    ({"batch_size": 2.5}, TypeError, "batch_size"),
    ({"image_size": "32"}, TypeError, "image_size"),
    ({"image_size": (16.9, 16.9)}, TypeError, "image_size"),
    ({"image_size": (0, 16)}, ValueError, "image_size"),
    ({"image_size": (True, 16)}, TypeError, "image_size"),
    ({"image_size": (16, 16, 3)}, ValueError, "image_size"),
    ({"shuffle_buffer": 0}, ValueError, "shuffle_buffer"),
    ({"label_mode": "sparse"}, ValueError, "label_mode"),
    ({"label_mode": "binary"}, ValueError, "2 classes"),
])
def test_bad_load_arguments_are_refused(mixed, arguments, error, message):
    arguments.setdefault("image_size", (16, 16))
    with pytest.raises(error, match=message):
        tfrecord_tools.load(mixed, "train", **arguments)


# N11
@pytest.mark.parametrize(("name", "value", "error", "expected"), [
    ("channels", True, TypeError, "1 or 3"),
    ("channels", 3.0, TypeError, "1 or 3"),
    ("channels", 2, ValueError, "1 or 3"),
    ("seed", "abc", TypeError, "whole number or None"),
    ("seed", 1.5, TypeError, "whole number or None"),
    ("seed", True, TypeError, "whole number or None"),
    ("shuffle", "no", TypeError, "True, False or None"),
    ("drop_remainder", "no", TypeError, "True or False"),
    ("cache", "/no/such/dir/c", ValueError, "folder /no/such/dir does not exist"),
    ("cache", 3, TypeError, "True, False or a file path"),
    ("dtype", 32, TypeError, "'uint8' or 'float32'"),
    ("input_context", "worker 0", TypeError, "tf.distribute.InputContext"),
    ("num_input_pipelines", 1.5, TypeError, "unexpected keyword argument"),
])
def test_every_load_argument_is_checked_up_front_in_one_line(mixed, name, value, error, expected):
    with pytest.raises(error) as caught:
        tfrecord_tools.load(mixed, "train", image_size=(16, 16), **{name: value})
    message = str(caught.value)
    assert name in message and expected in message and "\n" not in message, message
    if "unexpected" not in expected:
        assert repr(value) in message, message


def test_class_names_and_label_modes(mixed):
    dataset = tfrecord_tools.load(mixed, "train", batch_size=60, image_size=(16, 16), shuffle=False,
                                  label_mode="categorical")
    assert dataset.class_names == ["cat", "dog", "fox"]
    _, labels = next(iter(dataset))
    assert labels.dtype == tf.float32 and labels.shape == (60, 3)
    assert labels.numpy().sum(axis=0).tolist() == [20, 20, 20]
    images_only = tfrecord_tools.load(mixed, "train", batch_size=60, image_size=(16, 16), shuffle=False,
                                      label_mode=None)
    assert next(iter(images_only)).shape == (60, 16, 16, 3)
    single = tfrecord_tools.load(mixed, "train", batch_size=None, image_size=(16, 16), label_mode="categorical")
    assert next(iter(single))[1].shape == (3,)


def test_binary_labels(tmp_path):
    source = make_class_folder(tmp_path / "src", classes=("no", "yes"), per_class=3)
    write_records(source, tmp_path / "out", test_fraction=0)
    _, labels = next(iter(tfrecord_tools.load(tmp_path / "out", "train", batch_size=6, shuffle=False,
                                              label_mode="binary")))
    assert labels.dtype == tf.float32 and labels.shape == (6, 1) and sorted(labels.numpy()[:, 0]) == [0, 0, 0, 1, 1, 1]


def test_cache_file_follows_a_rewritten_dataset(tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache" / "train"
    cache.parent.mkdir()
    write_records(make_class_folder(tmp_path / "first", per_class=2), out, test_fraction=0)

    def pixels():
        dataset = tfrecord_tools.load(out, "train", batch_size=None, shuffle=False, cache=cache)
        return sorted(float(np.asarray(image, np.float64).sum()) for image, _ in dataset)

    first = pixels()
    assert pixels() == first  # served from the cache
    second_source = tmp_path / "second"
    for name in ("cat", "dog", "fox"):
        for index in range(2):
            write_file(second_source / name / f"{index}.jpg", image_bytes(seed=5000 + 10 * index + len(name)))
    write_records(second_source, out, test_fraction=0, overwrite=True)
    assert pixels() != first and len(pixels()) == 6  # the old cache would give the first images again


def test_input_pipelines_split_the_shards_without_overlap(written):
    _, out = written
    parts = []
    for index in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=index, num_replicas_in_sync=1)
        dataset = tfrecord_tools.load(out, "train", batch_size=None, input_context=context)
        parts.append({digest(image.numpy()) for image, _ in dataset})
    assert not parts[0] & parts[1] and len(parts[0] | parts[1]) == 12
    with pytest.raises(ValueError, match="only 2 shard"):
        tfrecord_tools.load(out, "train", input_context=tf.distribute.InputContext(3, 0, 1))


# N4
def test_a_cache_file_is_not_shared_between_input_pipelines(mixed, tmp_path):
    seen = []
    for pipeline in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline,
                                             num_replicas_in_sync=2)
        dataset = tfrecord_tools.load(mixed, "train", batch_size=8, image_size=(16, 16), shuffle=False,
                                      cache=tmp_path / "cache", input_context=context)
        seen.append(order(dataset))  # the whole pass: pipeline 0's cache is complete before pipeline 1 starts
    assert len(seen[0]) + len(seen[1]) == 60 and not set(seen[0]) & set(seen[1])


def test_input_context_shards_by_file(mixed):
    seen = []
    for pipeline in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline,
                                             num_replicas_in_sync=4)
        dataset = tfrecord_tools.load(mixed, "train", batch_size=8, image_size=(16, 16), shuffle=False,
                                      input_context=context)
        batches = [images.shape[0] for images, _ in dataset]
        assert max(batches) == 2  # the global batch of 8 over 4 replicas
        seen.append(order(dataset))
    assert len(seen[0]) + len(seen[1]) == 60 and not set(seen[0]) & set(seen[1])


@pytest.mark.slow
def test_load_under_a_two_device_mirrored_strategy(mixed):
    """distribute_datasets_from_function on two logical CPUs (set before TensorFlow starts: a subprocess)."""
    code = textwrap.dedent(f"""
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import tfrecord_tools
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        dataset = strategy.distribute_datasets_from_function(
            lambda context: tfrecord_tools.load({str(mixed)!r}, "train", batch_size=8, image_size=(16, 16),
                                                shuffle=False, input_context=context, drop_remainder=True))
        sizes, labels = set(), []
        for images, label_batch in dataset:
            for replica in strategy.experimental_local_results(images):
                sizes.add(int(replica.shape[0]))
            for replica in strategy.experimental_local_results(label_batch):
                labels.extend(int(value) for value in replica.numpy())
        print("replicas", strategy.num_replicas_in_sync, "sizes", sorted(sizes), "images", len(labels),
              "per class", [labels.count(label) for label in range(3)])
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    line = result.stdout.strip().splitlines()[-1]
    # 60 images in batches of 8 split over 2 replicas: 4 a replica; 7 whole batches of 8 = 56 images.
    assert line.startswith("replicas 2 sizes [4] images 56"), line


def test_parse_example_gives_every_feature(written):
    _, out = written
    records = tf.data.TFRecordDataset(tfrecord_tools.shard_files(out, "test"))
    features = next(iter(records.map(tfrecord_tools.parse_example)))
    assert set(features) == set(tfrecord_tools.FEATURES)
    image = tfrecord_tools.decode_image(features)
    assert image.shape == (int(features["image/height"]), int(features["image/width"]), 3)
    assert features["image/format"].numpy() == b"jpeg"


def test_without_tensorflow_load_names_the_install_command(written, monkeypatch):
    """Writing, verifying and info need no TensorFlow; reading does, and says how to install it."""
    _, out = written
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # `import tensorflow` now fails as if it were missing
    monkeypatch.delitem(sys.modules, "tfrecord_tools.read")
    monkeypatch.delattr(tfrecord_tools, "read")
    for use in (lambda: tfrecord_tools.load(out, "train"), lambda: tfrecord_tools.parse_example):
        with pytest.raises(ModuleNotFoundError) as caught:
            use()
        message = str(caught.value)
        assert "python -m pip install tensorflow" in message and "\n" not in message, message
    assert tfrecord_tools.verify(out, workers=1).ok


def test_feature_description_is_made_from_the_one_spec():
    assert set(tfrecord_tools.FEATURE_DESCRIPTION) == set(tfrecord_tools.FEATURES)
    for name, spec in tfrecord_tools.FEATURES.items():
        assert tfrecord_tools.FEATURE_DESCRIPTION[name].dtype.name == spec["dtype"]
    assert json.loads(json.dumps(tfrecord_tools.FEATURES)) == tfrecord_tools.FEATURES

