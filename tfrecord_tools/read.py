"""Read shards back as a ``tf.data.Dataset`` of ``(image, label)``, following the tf.data guide.

The pipeline :func:`load` builds, and why each step is there::

    shard file names (from dataset.json, not a glob: unfinished shards never match)
    -> shard(num_input_pipelines, input_pipeline_id)   each worker of a multi-worker job reads its own files
    -> shuffle(file names)                             a new file order every epoch (train only)
    -> interleave(TFRecordDataset, parallel)           read several files at once
    -> shuffle(records)                                records are small: shuffle before decoding
    -> batch(parse_batch) -> parse_example -> unbatch  vectorised parsing: one op call per batch
    -> map(decode [and crop] [and resize], parallel)   decode_and_crop_jpeg decodes only the window
    -> cache()                                         optional: decoded images in memory
    -> batch(batch_size) -> prefetch(AUTOTUNE)         overlap input with training

With ``cache=True`` the record shuffle moves after the cache, so each epoch
still gets a new order without decoding again.
"""

import os

import tensorflow as tf

from .errors import TFRecordToolsError
from .sidecar import read_sidecar

#: The ``features`` argument of ``tf.io.parse_single_example`` for our records.
FEATURE_DESCRIPTION = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/format": tf.io.FixedLenFeature([], tf.string),
    "image/height": tf.io.FixedLenFeature([], tf.int64),
    "image/width": tf.io.FixedLenFeature([], tf.int64),
    "image/channels": tf.io.FixedLenFeature([], tf.int64),
    "image/class/label": tf.io.FixedLenFeature([], tf.int64),
    "image/class/text": tf.io.FixedLenFeature([], tf.string),
    "image/filename": tf.io.FixedLenFeature([], tf.string),
    "image/sha256": tf.io.FixedLenFeature([], tf.string),
    "image/source_format": tf.io.FixedLenFeature([], tf.string),
    "image/reencoded": tf.io.FixedLenFeature([], tf.int64),
}
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


def load(out, split, *, batch_size=32, image_size=None, crop=None, shuffle=None, seed=None,
         shuffle_buffer=10_000, cache=False, channels=3, dtype="uint8", num_input_pipelines=1,
         input_pipeline_id=0, drop_remainder=False, parse_batch_size=256):
    """A ``tf.data.Dataset`` of ``(images, labels)`` batches read from the shards.

    Parameters
    ----------
    out : str or Path
        Folder written by ``write``.
    split : str
        ``"train"``, ``"test"``, ...
    batch_size : int or None
        Images per batch; None yields single images.
    image_size : (int, int), optional
        ``(height, width)`` to resize to (bilinear). Required when the split's
        images are not all one size.
    crop : "center" or (y, x, height, width), optional
        Decode only this window (``tf.io.decode_and_crop_jpeg``): ``"center"``
        takes the largest centred square. Applied before ``image_size``.
    shuffle : bool, optional
        Shuffle files and records every epoch; default True for ``"train"``.
    seed : int, optional
        Shuffle seed, for a reproducible order.
    shuffle_buffer : int
        Records (or, with ``cache``, decoded images) in the shuffle buffer.
    cache : bool or str
        Cache decoded (and cropped/resized) images in memory (True) or in a file.
    channels : int
        1 or 3 channels in the output.
    dtype : {"uint8", "float32"}
        ``uint8`` in [0, 255], or ``float32`` scaled to [0, 1].
    num_input_pipelines, input_pipeline_id : int
        For multi-worker training: this pipeline reads shards ``id, id + n, ...``.
    drop_remainder : bool
        Drop a last, smaller batch.
    parse_batch_size : int
        Records parsed per ``tf.io.parse_example`` call.

    Returns
    -------
    tf.data.Dataset
        Elements ``(images, labels)``: images ``(batch, H, W, channels)`` of
        ``dtype``, labels ``(batch,)`` int64 (without the batch axis if
        ``batch_size`` is None).

    Raises
    ------
    TFRecordToolsError, SidecarError, ValueError
        Unknown split, missing shard, or arguments that cannot work.
    """
    sidecar = read_sidecar(out)
    files = shard_files(out, split)
    shards = sidecar["splits"][split]["shards"]
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if dtype not in ("uint8", "float32"):
        raise ValueError(f"dtype must be 'uint8' or 'float32', got {dtype!r}")
    if not 0 <= input_pipeline_id < num_input_pipelines:
        raise ValueError(f"input_pipeline_id must be in [0, {num_input_pipelines}), got {input_pipeline_id}")
    if num_input_pipelines > len(files):
        raise ValueError(
            f"{num_input_pipelines} input pipelines but split {split!r} has only {len(files)} shard(s); "
            "write it with --num-shards at least the number of pipelines"
        )
    if crop is not None and crop != "center" and (not isinstance(crop, list | tuple) or len(crop) != 4):
        raise ValueError(f"crop must be 'center' or (y, x, height, width), got {crop!r}")
    size = sidecar["splits"][split].get("image_size") or {}
    uniform = size.get("min_height") == size.get("max_height") and size.get("min_width") == size.get("max_width")
    if batch_size is not None and image_size is None and crop in (None, "center") and not uniform:
        raise ValueError(
            f"images in split {split!r} range from {size.get('min_height')}x{size.get('min_width')} to "
            f"{size.get('max_height')}x{size.get('max_width')} pixels; pass image_size=(height, width) to batch them"
        )
    shuffle = split == "train" if shuffle is None else shuffle
    autotune = tf.data.AUTOTUNE

    chosen = list(range(len(files)))[input_pipeline_id::num_input_pipelines]
    record_count = sum(shards[index]["images"] for index in chosen)
    dataset = tf.data.Dataset.from_tensor_slices(files)
    if num_input_pipelines > 1:
        dataset = dataset.shard(num_input_pipelines, input_pipeline_id)
    if shuffle:
        dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.interleave(
        lambda path: tf.data.TFRecordDataset(path, buffer_size=8 << 20),
        cycle_length=max(1, min(len(chosen), 8)),
        num_parallel_calls=autotune,
        deterministic=not shuffle,
    )
    if shuffle and not cache:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(parse_batch_size).map(
        lambda records: tf.io.parse_example(records, _TRAINING_FEATURES), num_parallel_calls=autotune
    ).unbatch()

    static_size = None
    if image_size is not None:
        static_size = tuple(int(side) for side in image_size)
    elif crop not in (None, "center"):
        static_size = (int(crop[2]), int(crop[3]))
    elif crop is None and uniform and size:
        static_size = (size["min_height"], size["min_width"])
    elif crop == "center" and uniform and size:
        side = min(size["min_height"], size["min_width"])
        static_size = (side, side)

    def decode(features):
        encoded = features["image/encoded"]
        if crop is None:
            image = tf.io.decode_jpeg(encoded, channels=channels)
        else:
            window = _crop_window(features["image/height"], features["image/width"], crop)
            image = tf.io.decode_and_crop_jpeg(encoded, window, channels=channels)
        if image_size is not None:
            image = tf.image.resize(image, static_size)
            image = image / 255.0 if dtype == "float32" else tf.cast(tf.round(image), tf.uint8)
        elif dtype == "float32":
            image = tf.cast(image, tf.float32) / 255.0
        if static_size is not None:
            image = tf.ensure_shape(image, (*static_size, channels))
        return image, features["image/class/label"]

    dataset = dataset.map(decode, num_parallel_calls=autotune, deterministic=not shuffle)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(record_count))
    if cache:
        dataset = dataset.cache("" if cache is True else os.fspath(cache))
        if shuffle:
            dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if batch_size is not None:
        dataset = dataset.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=autotune)
    return dataset.prefetch(autotune)
