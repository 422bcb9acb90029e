"""Read shards back as a ``tf.data.Dataset`` of ``(image, label)``, following the tf.data guide.

The pipeline :func:`load` builds, and why each step is there::

    shard file names (from dataset.json, not a glob: unfinished shards never match)
    -> shard(pipelines, pipeline id)                   each worker of a multi-worker job reads its own files
    -> shuffle(file names)                             a new file order every epoch (train only)
    -> interleave(TFRecordDataset)                     records from several files in turn
    -> shuffle(records)                                records are small: shuffle before decoding
    small images of one size (CIFAR):
    -> batch(batch_size) -> map(parse_example + map_fn(decode), parallel) -> resize the batch
                                                       vectorised parsing and one graph loop per batch
    larger or mixed-size images (photos):
    -> map(parse_single_example + decode + resize, parallel) -> batch(batch_size)
                                                       libjpeg dominates: parallel per-image calls win
    -> prefetch(AUTOTUNE)                              overlap input with training

``crop`` uses ``decode_and_crop_jpeg``, which decodes only the window; a resize
to the size the images already have is skipped.
With ``cache`` the decoded (cropped, resized) images are cached one by one and
the record shuffle moves after the cache, so each epoch still gets a new order
without decoding again.

Two choices were made by measurement (``benchmarks/tfrecord_speed.py``, 2-core
machine, 2026-11-25):

* Shards are interleaved in one thread. Parallel reads pay off on network
  storage; from a local disk one thread keeps up, and handing single records
  between threads costs more than it saves (CIFAR-10, decode included: 73,000
  records/s in one thread, 48,000 in parallel). For files on GCS or NFS, build
  a pipeline of your own from :func:`shard_files` and :func:`parse_example`.
* tf.data's autotuner is off. On 2 cores it left one core idle in about 4
  passes out of 10 (decoding then ran at half speed: 39,000 instead of
  65,000-76,000 images/s for CIFAR, 627 instead of 1,250 for photos), even with
  fixed ``num_parallel_calls``; with it off, every pass used both cores. Off, an
  ``AUTOTUNE`` parallelism means ``min(16, CPU cores)`` threads, which is what a
  decode-bound reader wants, and ``prefetch`` still sizes its buffer itself.
  The option carries over to maps a user adds after :func:`load`; a
  ``dataset.with_options(options)`` with ``options.autotune.enabled = True``
  turns it on again (the later option wins).
"""

import hashlib
import json
import numbers
import os

try:
    import tensorflow as tf
except ModuleNotFoundError as missing:
    if missing.name != "tensorflow":
        raise
    # Writing, verifying and info work without TensorFlow; reading with tf.data does not.
    raise ModuleNotFoundError(
        "tfrecord_tools.load() and parse_example() read with tf.data, and TensorFlow is not installed: "
        "python -m pip install tensorflow (or, for tfrecord_tools from this checkout: "
        "python -m pip install \".[tensorflow]\")", name="tensorflow") from None

from .errors import TFRecordToolsError
from .sidecar import FEATURES, read_sidecar

AUTOTUNE = tf.data.AUTOTUNE

#: The ``features`` argument of ``tf.io.parse_single_example`` for our records, made from
#: :data:`tfrecord_tools.sidecar.FEATURES` (the one description of a record).
FEATURE_DESCRIPTION = {
    name: tf.io.FixedLenFeature([], {"string": tf.string, "int64": tf.int64}[spec["dtype"]])
    for name, spec in FEATURES.items()
}
LABEL_MODES = ("int", "categorical", "binary", None)
#: Records parsed per ``tf.io.parse_example`` call when small images are decoded a batch at a time.
_PARSE_BATCH_SIZE = 256
# Reading only what load() needs keeps parsing cheap.
_TRAINING_FEATURES = {
    name: FEATURE_DESCRIPTION[name] for name in ("image/encoded", "image/height", "image/width", "image/class/label")
}


def parse_example(serialized):
    """Parse one serialised record into a dict of scalar tensors.

    Parameters
    ----------
    serialized : tf.Tensor, shape (), dtype string
        One record from ``tf.data.TFRecordDataset``.

    Returns
    -------
    dict[str, tf.Tensor]
        Every feature of :data:`FEATURE_DESCRIPTION`; ``image/encoded`` is still
        JPEG bytes: decode it with :func:`decode_image` or ``tf.io.decode_jpeg``.

    Examples
    --------
    >>> records = tf.data.TFRecordDataset(tfrecord_tools.shard_files("out", "train"))
    >>> for features in records.map(tfrecord_tools.parse_example).take(1):
    ...     print(features["image/class/text"].numpy(), features["image/height"].numpy())
    """
    return tf.io.parse_single_example(serialized, FEATURE_DESCRIPTION)


def decode_image(features, channels=3):
    """Decode ``features["image/encoded"]`` to a uint8 tensor of shape (H, W, channels)."""
    return tf.io.decode_jpeg(features["image/encoded"], channels=channels)


def shard_files(out, split):
    """The shard paths of a split, in order, as listed in ``dataset.json``.

    Raises
    ------
    TFRecordToolsError
        Unknown split, or a listed shard is missing.
    """
    sidecar = read_sidecar(out)
    if split not in sidecar["splits"]:
        raise TFRecordToolsError(
            f"split {split!r} is not in {out}; it has {', '.join(sorted(sidecar['splits']))}"
        )
    paths = [os.path.join(os.fspath(out), shard["file"]) for shard in sidecar["splits"][split]["shards"]]
    missing = [path for path in paths if not os.path.isfile(path)]
    if missing:
        raise TFRecordToolsError(f"shard {missing[0]} is listed in dataset.json but missing")
    return paths


def _crop_window(height, width, crop):
    """``[y, x, h, w]`` int32 for ``decode_and_crop_jpeg``."""
    if crop == "center":
        side = tf.minimum(height, width)
        return tf.cast(tf.stack([(height - side) // 2, (width - side) // 2, side, side]), tf.int32)
    return tf.constant(crop, dtype=tf.int32)


def _check_crop(crop, size, split):
    """Refuse a crop window that some image of the split cannot hold (it would fail mid-epoch)."""
    y, x, height, width = window = tuple(int(value) for value in crop)
    if y < 0 or x < 0 or height < 1 or width < 1:
        raise ValueError(f"crop (y, x, height, width) needs y, x >= 0 and height, width >= 1, got {window}")
    if not size:
        return
    min_height, min_width = size["min_height"], size["min_width"]
    if y + height > min_height or x + width > min_width:
        raise ValueError(
            f"crop {window} does not fit every image of split {split!r}: the smallest are {min_height} px high "
            f"and {min_width} px wide, so y + height must be <= {min_height} and x + width <= {min_width} "
            f"(here {y + height} and {x + width}); the largest window at (0, 0) is "
            f"(0, 0, {min_height}, {min_width}), or use crop='center'"
        )


def _whole(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _refuse(name, value, expected, error=ValueError):
    """A one-line error naming the argument, its value and what is expected."""
    raise error(f"load(): {name} must be {expected}, got {value!r}")


def _check_arguments(split, batch_size, image_size, crop, shuffle, seed, shuffle_buffer, cache, channels, dtype,
                     drop_remainder, label_mode, input_context):
    """Refuse, before any graph is built, an argument that cannot work (TypeError: wrong type, ValueError: value)."""
    if not isinstance(split, str):
        _refuse("split", split, "a split name such as 'train'", TypeError)
    if batch_size is not None:
        if not _whole(batch_size):
            _refuse("batch_size", batch_size, "a whole number of at least 1, or None for single images", TypeError)
        if batch_size < 1:
            _refuse("batch_size", batch_size, "a whole number of at least 1, or None for single images")
    if image_size is not None:
        if isinstance(image_size, str | bytes) or not isinstance(image_size, list | tuple) or not all(
                _whole(side) for side in image_size):
            _refuse("image_size", image_size, "(height, width) in whole pixels of at least 1", TypeError)
        if len(image_size) != 2 or not all(side >= 1 for side in image_size):
            _refuse("image_size", image_size, "(height, width) in whole pixels of at least 1")
    if crop is not None and crop != "center":
        if not isinstance(crop, list | tuple) or not all(_whole(value) for value in crop):
            _refuse("crop", crop, "'center' or (y, x, height, width) in whole pixels", TypeError)
        if len(crop) != 4:
            _refuse("crop", crop, "'center' or (y, x, height, width) in whole pixels")
    if shuffle is not None and not isinstance(shuffle, bool):
        _refuse("shuffle", shuffle, "True, False or None (shuffle the train split only)", TypeError)
    if seed is not None and not _whole(seed):
        _refuse("seed", seed, "a whole number or None", TypeError)
    if not _whole(shuffle_buffer):
        _refuse("shuffle_buffer", shuffle_buffer, "a whole number of at least 1", TypeError)
    if shuffle_buffer < 1:
        _refuse("shuffle_buffer", shuffle_buffer, "a whole number of at least 1")
    if not isinstance(cache, bool | str | os.PathLike):
        _refuse("cache", cache, "True, False or a file path", TypeError)
    if not isinstance(cache, bool):
        folder = os.path.dirname(os.path.abspath(os.fspath(cache)))
        if not os.fspath(cache) or not os.path.isdir(folder):
            _refuse("cache", cache, f"a file path in an existing folder (the folder {folder} does not exist)")
    if not _whole(channels):
        _refuse("channels", channels, "1 or 3", TypeError)
    if channels not in (1, 3):
        _refuse("channels", channels, "1 or 3")
    if not isinstance(dtype, str):
        _refuse("dtype", dtype, "'uint8' or 'float32'", TypeError)
    if dtype not in ("uint8", "float32"):
        _refuse("dtype", dtype, "'uint8' or 'float32'")
    if not isinstance(drop_remainder, bool):
        _refuse("drop_remainder", drop_remainder, "True or False", TypeError)
    if label_mode not in LABEL_MODES:
        _refuse("label_mode", label_mode, "'int', 'categorical', 'binary' or None")
    if input_context is not None and not isinstance(input_context, tf.distribute.InputContext):
        _refuse("input_context", input_context,
                "the tf.distribute.InputContext that strategy.distribute_datasets_from_function passes, or None",
                TypeError)


def _cache_path(cache, out, split, shards, settings):
    """The cache file for these records and settings.

    The name carries a digest of the shards this pipeline reads (their SHA-256,
    so a rewritten OUT, or another input pipeline, never gets these images) and
    of the settings.
    """
    identity = json.dumps(
        [os.path.realpath(os.fspath(out)), split, [shard["sha256"] for shard in shards], settings],
        sort_keys=True, default=str,
    )
    return f"{os.fspath(cache)}.{hashlib.sha256(identity.encode()).hexdigest()[:16]}"


def load(out, split, *, batch_size=32, image_size=None, crop=None, shuffle=None, seed=None,
         shuffle_buffer=10_000, cache=False, channels=3, dtype="uint8", drop_remainder=False, label_mode="int",
         input_context=None):
    """A ``tf.data.Dataset`` of ``(images, labels)`` batches read from the shards.

    Parameters
    ----------
    out : str or Path
        Folder written by ``write``.
    split : str
        ``"train"``, ``"test"``, ...
    batch_size : int or None
        Images per batch; None yields single images. With ``input_context``,
        the global batch size: each replica gets
        ``input_context.get_per_replica_batch_size(batch_size)``.
    image_size : (int, int), optional
        ``(height, width)`` to resize to (bilinear). Required when the split's
        images are not all one size.
    crop : "center" or (y, x, height, width), optional
        Decode only this window (``tf.io.decode_and_crop_jpeg``): ``"center"``
        takes the largest centred square. Applied before ``image_size``. A
        window must fit the split's smallest image (``image_size`` in
        ``dataset.json``): ``y + height <= min_height``, ``x + width <= min_width``.
    shuffle : bool, optional
        Shuffle files and records every epoch; default True for ``"train"``.
    seed : int, optional
        Shuffle seed: the same seed gives the same order every time the dataset
        is built (parallel decoding then keeps its order, too).
    shuffle_buffer : int
        Records (or, with ``cache``, decoded images) in the shuffle buffer.
    cache : bool or str
        Cache decoded (and cropped/resized) images in memory (True) or in files
        starting with this path, in a folder that exists. The files' names carry
        a digest of the shards this pipeline reads (their SHA-256 in
        ``dataset.json``) and of the settings, so a rewritten OUT, another input
        pipeline or other settings never get the images of an old cache.
    channels : int
        1 or 3 channels in the output.
    dtype : {"uint8", "float32"}
        ``uint8`` in [0, 255], or ``float32`` scaled to [0, 1].
    drop_remainder : bool
        Drop a last, smaller batch.
    label_mode : {"int", "categorical", "binary", None}
        As in ``keras.utils.image_dataset_from_directory``: int64 class indices,
        float32 one-hot vectors ``(batch, classes)``, float32 0/1 ``(batch, 1)``
        (two classes only), or no labels (the dataset yields images alone).
    input_context : tf.distribute.InputContext, optional
        What ``strategy.distribute_datasets_from_function`` passes to its
        function: the shards are then split by file between the input pipelines
        (workers; pipeline ``i`` of ``n`` reads shards ``i, i + n, ...``), and
        ``batch_size`` is divided between the replicas.

    Returns
    -------
    tf.data.Dataset
        Elements ``(images, labels)``: images ``(batch, H, W, channels)`` of
        ``dtype``, labels as ``label_mode`` says (without the batch axis if
        ``batch_size`` is None). ``dataset.class_names`` lists the class names
        in label order, as Keras's folder loader does (it is lost by later
        ``map``/``batch`` calls, which return new datasets). tf.data's autotuner
        is off (see the module docstring).

    Raises
    ------
    TFRecordToolsError, SidecarError
        Unknown split, missing shard, damaged ``dataset.json``.
    TypeError, ValueError
        An argument of the wrong type or value (one line naming it), or one that
        cannot work with this split (a crop window that does not fit, mixed image
        sizes without ``image_size``, more input pipelines than shards).
    """
    _check_arguments(split, batch_size, image_size, crop, shuffle, seed, shuffle_buffer, cache, channels, dtype,
                     drop_remainder, label_mode, input_context)
    sidecar = read_sidecar(out)
    files = shard_files(out, split)
    shards = sidecar["splits"][split]["shards"]
    class_names = list(sidecar["classes"])
    if label_mode == "binary" and len(class_names) != 2:
        raise ValueError(f"label_mode='binary' needs 2 classes; this dataset has {len(class_names)}: use "
                         "'categorical' or 'int'")
    pipelines, pipeline_id = 1, 0
    if input_context is not None:
        pipelines, pipeline_id = input_context.num_input_pipelines, input_context.input_pipeline_id
        if batch_size is not None:
            batch_size = input_context.get_per_replica_batch_size(batch_size)
    if pipelines > len(files):
        raise ValueError(
            f"{pipelines} input pipelines but split {split!r} has only {len(files)} shard(s); "
            "write it with --num-shards at least the number of pipelines"
        )
    size = sidecar["splits"][split].get("image_size") or {}
    if crop not in (None, "center"):
        _check_crop(crop, size, split)
    uniform = size.get("min_height") == size.get("max_height") and size.get("min_width") == size.get("max_width")
    if batch_size is not None and image_size is None and crop in (None, "center") and not uniform:
        raise ValueError(
            f"images in split {split!r} range from {size.get('min_height')}x{size.get('min_width')} to "
            f"{size.get('max_height')}x{size.get('max_width')} pixels; pass image_size=(height, width) to batch them"
        )
    shuffle = split == "train" if shuffle is None else shuffle
    # A seeded shuffle promises the same order every time: parallel steps must then keep theirs.
    deterministic = not shuffle or seed is not None
    resize_to = tuple(int(side) for side in image_size) if image_size is not None else None
    chosen = list(range(len(files)))[pipeline_id::pipelines]
    cache_file = None
    if cache is True:
        cache_file = ""
    elif cache:
        cache_file = _cache_path(cache, out, split, [shards[index] for index in chosen],
                                 [crop, resize_to, channels, dtype])

    # Size of the decoded (and cropped) image when it is the same for every record.
    decoded_size = None
    if crop not in (None, "center"):
        decoded_size = (int(crop[2]), int(crop[3]))
    elif uniform and size:
        side = min(size["min_height"], size["min_width"])
        decoded_size = (size["min_height"], size["min_width"]) if crop is None else (side, side)
    if resize_to == decoded_size:
        resize_to = None  # resizing to the size the images already have would only cost time
    output_size = resize_to or decoded_size  # None: images keep their own (varying) sizes
    # Small images of one size are decoded a batch at a time in one graph loop: for 32x32
    # CIFAR that is ~2x faster than a tf.data map call per image. Large images spend their
    # time in libjpeg, where tf.data's parallel map over single images is faster.
    vectorised = decoded_size is not None and decoded_size[0] * decoded_size[1] <= 128 * 128

    record_count = sum(shards[index]["images"] for index in chosen)
    dataset = tf.data.Dataset.from_tensor_slices(files)
    if pipelines > 1:
        dataset = dataset.shard(pipelines, pipeline_id)
    if shuffle:
        dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.interleave(tf.data.TFRecordDataset, cycle_length=max(1, min(len(chosen), 8)))
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(record_count))

    def decode_only(encoded, height, width):
        if crop is None:
            image = tf.io.decode_jpeg(encoded, channels=channels)
        else:
            image = tf.io.decode_and_crop_jpeg(encoded, _crop_window(height, width, crop), channels=channels)
        return tf.ensure_shape(image, (*decoded_size, channels)) if decoded_size is not None else image

    def finish(images):
        """Resize and convert one image (H, W, C) or a batch (N, H, W, C)."""
        if resize_to is not None:
            images = tf.image.resize(images, resize_to)
            images = images / 255.0 if dtype == "float32" else tf.cast(tf.round(images), tf.uint8)
        elif dtype == "float32":
            images = tf.cast(images, tf.float32) / 255.0
        if output_size is not None:
            images = tf.ensure_shape(images, (*images.shape[:-3], *output_size, channels))
        return images

    def decode_record(record):
        features = tf.io.parse_single_example(record, _TRAINING_FEATURES)
        image = decode_only(features["image/encoded"], features["image/height"], features["image/width"])
        return finish(image), features["image/class/label"]

    def decode_batch(records):
        features = tf.io.parse_example(records, _TRAINING_FEATURES)
        images = tf.map_fn(
            lambda columns: decode_only(*columns),
            (features["image/encoded"], features["image/height"], features["image/width"]),
            fn_output_signature=tf.TensorSpec((*decoded_size, channels), tf.uint8),
            parallel_iterations=32,
        )
        return finish(images), features["image/class/label"]

    if cache_file is not None:
        # Decode once, cache single images, then shuffle and batch every epoch anew.
        if vectorised:
            dataset = dataset.batch(_PARSE_BATCH_SIZE).map(decode_batch, num_parallel_calls=AUTOTUNE).unbatch()
            dataset = dataset.apply(tf.data.experimental.assert_cardinality(record_count))
        else:
            dataset = dataset.map(decode_record, num_parallel_calls=AUTOTUNE)
        dataset = dataset.cache(cache_file)
        if shuffle:
            dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        if batch_size is not None:
            dataset = dataset.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=AUTOTUNE)
        return _finish(dataset, label_mode, class_names)

    if shuffle:  # records are small: shuffle them before decoding
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if vectorised:
        dataset = dataset.batch(batch_size or _PARSE_BATCH_SIZE, drop_remainder=drop_remainder and bool(batch_size))
        dataset = dataset.map(decode_batch, num_parallel_calls=AUTOTUNE, deterministic=deterministic)
        if batch_size is None:
            dataset = dataset.unbatch().apply(tf.data.experimental.assert_cardinality(record_count))
    else:
        dataset = dataset.map(decode_record, num_parallel_calls=AUTOTUNE, deterministic=deterministic)
        if batch_size is not None:
            dataset = dataset.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=AUTOTUNE)
    return _finish(dataset, label_mode, class_names)


def _finish(dataset, label_mode, class_names):
    """Labels as ``label_mode`` asks, prefetch, options, and ``.class_names``."""
    if label_mode == "categorical":
        dataset = dataset.map(lambda images, labels: (images, tf.one_hot(labels, len(class_names))))
    elif label_mode == "binary":
        dataset = dataset.map(lambda images, labels: (images, tf.cast(tf.expand_dims(labels, -1), tf.float32)))
    elif label_mode is None:
        dataset = dataset.map(lambda images, labels: images)
    options = tf.data.Options()
    options.autotune.enabled = False  # see the module docstring
    dataset = dataset.prefetch(AUTOTUNE).with_options(options)
    dataset.class_names = class_names
    return dataset
