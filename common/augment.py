"""The lab's CIFAR-10 maps: training augmentation and the test-time crop.

Both functions take one image ``(32, 32, 3)`` or a batch ``(B, 32, 32, 3)`` of
uint8 pixels and return float32 crops ``(24, 24, 3)`` / ``(B, 24, 24, 3)``
standardised per image (mean 0, standard deviation 1). The batch form draws
independent random numbers for every image, so ``dataset.batch(n).map(train_map)``
(the lab's "vectorised map") augments exactly like ``dataset.map(train_map).batch(n)``,
only faster. Both are plain TensorFlow ops: use them inside ``Dataset.map``.

Where we differ from the lab, on purpose:

* The lab's in-memory pipeline crops the *centre* for training
  (``resize_with_crop_or_pad``), so training never sees a shifted object; its
  timed pipeline uses ``random_crop``. We use a random crop for training by
  default and the centre crop for testing, which is what the 24x24 design is for.
* The lab's brightness step does nothing, at any pixel scale: it adds one
  constant to every pixel of an image, and per-image standardisation subtracts
  the image mean, constant included (checked: at most 2e-4 standard units of
  difference, float rounding). Its contrast step does survive, in part: it
  scales each channel's deviations around that channel's own mean, and
  standardisation rescales by one standard deviation over all channels, so the
  balance between colour cast and detail changes (0.06-0.4 standard units on
  average on real CIFAR-10, most at factors near 0.2). So what the lab trained
  on is centre crops, flipped, with that contrast change:
  ``train_map(images, crop="center", colour="lab")``, which reaches the lab's
  accuracy in its 5 epochs.
* ``colour="full"`` (the default) is the augmentation the lab intended: a
  brightness shift of up to +-63/255 (the lab's 63 assumes 0-255 pixels, its
  images are in [0, 1]) and the same contrast, then a clip to [0, 1]. The clip
  is what lets brightness matter: bright or dark parts saturate before
  standardisation. It pays off over longer training.
* The lab's batch-wise test map resizes the whole 32x32 image to 24x24 while
  training used 24x24 crops, which changes the objects' scale between training
  and testing. Testing here always uses the centre crop.
"""

from __future__ import annotations

import tensorflow as tf

CROP_SIZE = 24
BRIGHTNESS_MAX_DELTA = 63 / 255  # the lab's 63, on the [0, 1] scale its images use
CONTRAST_RANGE = (0.2, 1.8)


COLOUR_CHOICES = ("none", "lab", "full")


def train_map(images: tf.Tensor, *, crop: str = "random", colour: str = "full") -> tf.Tensor:
    """24x24 crop, random left-right flip, optional colour changes, standardisation.

    Parameters
    ----------
    images : (32, 32, 3) or (B, 32, 32, 3) uint8 tensor
    crop : {"random", "center"}
        Where the 24x24 window lies: anywhere (a fresh place per image and call),
        or in the centre as at test time.
    colour : {"full", "lab", "none"}
        ``full``: random brightness (+-63/255) and contrast (x0.2-x1.8), clipped
        to [0, 1]. ``lab``: what survives of the lab's colour steps, the contrast
        alone, unclipped (its brightness shift is a no-op, see the module
        docstring). ``none``: no colour change.

    Returns
    -------
    (24, 24, 3) or (B, 24, 24, 3) float32 tensor, each image with mean 0 and std 1.
    """
    if crop not in ("random", "center"):
        raise ValueError(f"crop={crop!r}: expected 'random' or 'center'")
    if colour not in COLOUR_CHOICES:
        raise ValueError(f"colour={colour!r}: expected one of {', '.join(map(repr, COLOUR_CHOICES))}")
    batch, single = _as_batch(images)
    batch_size = tf.shape(batch)[0]
    batch = tf.cast(batch, tf.float32) / 255.0
    if crop == "random":
        batch = _random_crops(batch, CROP_SIZE)
    else:
        batch = tf.image.resize_with_crop_or_pad(batch, CROP_SIZE, CROP_SIZE)
    flip = tf.random.uniform([batch_size, 1, 1, 1]) < 0.5
    batch = tf.where(flip, tf.reverse(batch, axis=[2]), batch)
    if colour == "full":
        brightness = tf.random.uniform([batch_size, 1, 1, 1], -BRIGHTNESS_MAX_DELTA, BRIGHTNESS_MAX_DELTA)
        batch = batch + brightness
    if colour in ("full", "lab"):
        # tf.image.adjust_contrast's rule, per image and channel: (x - mean) * factor + mean.
        contrast = tf.random.uniform([batch_size, 1, 1, 1], *CONTRAST_RANGE)
        channel_means = tf.reduce_mean(batch, axis=[1, 2], keepdims=True)
        batch = (batch - channel_means) * contrast + channel_means
    if colour == "full":
        batch = tf.clip_by_value(batch, 0.0, 1.0)
    batch = tf.image.per_image_standardization(batch)
    return batch[0] if single else batch


def test_map(images: tf.Tensor) -> tf.Tensor:
    """Centre 24x24 crop and per-image standardisation.

    Parameters
    ----------
    images : (32, 32, 3) or (B, 32, 32, 3) uint8 tensor

    Returns
    -------
    (24, 24, 3) or (B, 24, 24, 3) float32 tensor.
    """
    batch, single = _as_batch(images)
    batch = tf.cast(batch, tf.float32) / 255.0
    batch = tf.image.resize_with_crop_or_pad(batch, CROP_SIZE, CROP_SIZE)
    batch = tf.image.per_image_standardization(batch)
    return batch[0] if single else batch


def _as_batch(images):
    images = tf.convert_to_tensor(images)
    if images.shape.rank == 3:
        return images[tf.newaxis], True
    if images.shape.rank == 4:
        return images, False
    raise ValueError(f"expected an image (H, W, C) or a batch (B, H, W, C), got shape {images.shape}")


def _random_crops(batch: tf.Tensor, size: int) -> tf.Tensor:
    """An independent random ``size`` x ``size`` window from every image of ``batch``.

    Gathers rows and then columns with per-image offsets, so the whole batch is
    cropped in two vectorised ops and pixels are copied exactly (no resampling).
    """
    shape = tf.shape(batch)
    batch_size, height, width = shape[0], shape[1], shape[2]
    top = tf.random.uniform([batch_size], 0, height - size + 1, dtype=tf.int32)
    left = tf.random.uniform([batch_size], 0, width - size + 1, dtype=tf.int32)
    steps = tf.range(size)
    rows = top[:, tf.newaxis] + steps  # (B, size)
    columns = left[:, tf.newaxis] + steps
    batch = tf.gather(batch, rows, axis=1, batch_dims=1)  # (B, size, W, C)
    return tf.gather(batch, columns, axis=2, batch_dims=1)  # (B, size, size, C)
