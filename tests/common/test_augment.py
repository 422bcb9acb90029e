"""The lab's CIFAR-10 maps: shapes, dtypes, ranges, standardisation, randomness per image."""

import numpy as np
import pytest
import tensorflow as tf

from common import augment


def random_images(count, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)


def standardise(image):
    """numpy reference of tf.image.per_image_standardization."""
    image = image.astype(np.float64)
    adjusted_std = max(image.std(), 1.0 / np.sqrt(image.size))
    return (image - image.mean()) / adjusted_std


@pytest.mark.parametrize("image_map", [augment.train_map, augment.test_map])
def test_batch_and_single_image_shapes(image_map):
    batch = image_map(random_images(5)).numpy()
    single = image_map(random_images(1)[0]).numpy()
    assert batch.shape == (5, 24, 24, 3) and batch.dtype == np.float32
    assert single.shape == (24, 24, 3) and single.dtype == np.float32


@pytest.mark.parametrize("image_map", [augment.train_map, augment.test_map])
def test_every_image_is_standardised(image_map):
    images = random_images(16)
    images[3] = 7  # a flat image: standardisation must not divide by zero
    result = image_map(images).numpy()
    means = result.mean(axis=(1, 2, 3))
    stds = result.std(axis=(1, 2, 3))
    assert np.isfinite(result).all()
    np.testing.assert_allclose(means, 0.0, atol=1e-4)
    np.testing.assert_allclose(np.delete(stds, 3), 1.0, rtol=1e-3)
    np.testing.assert_allclose(result[3], 0.0, atol=1e-4)


def test_test_map_is_the_standardised_centre_crop():
    images = random_images(4)
    result = augment.test_map(images).numpy()
    for image, crop in zip(images, result, strict=True):
        np.testing.assert_allclose(crop, standardise(image[4:28, 4:28] / 255.0), atol=1e-4)
    np.testing.assert_array_equal(augment.test_map(images[0]).numpy(), result[0])


def test_train_map_draws_independent_randomness_per_image():
    tf.random.set_seed(0)
    copies = np.repeat(random_images(1), 32, axis=0)
    result = augment.train_map(copies).numpy()
    distinct = {crop.tobytes() for crop in result}
    assert len(distinct) == 32


def test_train_map_crops_a_window_of_the_original():
    """With a one-colour object on a flat background, every augmentation keeps two colour levels."""
    image = np.full((32, 32, 3), 40, dtype=np.uint8)
    image[12:20, 12:20] = 200
    tf.random.set_seed(1)
    result = augment.train_map(np.repeat(image[np.newaxis], 8, axis=0)).numpy()
    for crop in result:
        levels = np.unique(np.round(crop, 3))
        assert 1 <= len(levels) <= 2  # the bright square (if inside the window) and the background
        assert crop.max() >= crop.min()


def test_brightness_shift_is_on_the_unit_scale():
    # The lab's max_delta=63 was meant for 0-255 pixels; its images are in [0, 1].
    assert augment.BRIGHTNESS_MAX_DELTA == pytest.approx(63 / 255)


def test_rejects_images_of_the_wrong_rank():
    with pytest.raises(ValueError, match="expected an image"):
        augment.train_map(np.zeros((32, 32), dtype=np.uint8))


def test_centre_crop_without_colour_is_the_test_crop_flipped_or_not():
    """crop='center', colour='none': test_map's crop, maybe mirrored."""
    images = random_images(16)
    tf.random.set_seed(2)
    trained = augment.train_map(images, crop="center", colour="none").numpy()
    tested = augment.test_map(images).numpy()
    flipped = 0
    for train_crop, test_crop in zip(trained, tested, strict=True):
        if np.allclose(train_crop, test_crop, atol=1e-5):
            continue
        np.testing.assert_allclose(train_crop, test_crop[:, ::-1], atol=1e-5)
        flipped += 1
    assert 0 < flipped < 16


def test_the_labs_brightness_step_is_undone_by_standardisation():
    """Why colour='lab' has no brightness: a constant shift, even the lab's 63 on [0, 1] pixels, is subtracted again."""
    pixels = tf.constant(random_images(4), tf.float32) / 255.0
    standardised = tf.image.per_image_standardization(pixels)
    for shift in (0.25, 63.0):
        shifted = tf.image.per_image_standardization(pixels + shift)
        np.testing.assert_allclose(shifted.numpy(), standardised.numpy(), atol=1e-3)


def test_lab_colour_is_contrast_that_survives_standardisation_only_in_colour():
    """The lab's contrast scales each channel around its own mean: on grey images standardisation
    undoes it exactly, on colour images it does not."""
    grey = np.repeat(random_images(8)[..., :1], 3, axis=-1)
    coloured = random_images(8)
    for images, survives in ((grey, False), (coloured, True)):
        tf.random.set_seed(3)  # the same flips in both calls: the flip is the first random op
        plain = augment.train_map(images, crop="center", colour="none").numpy()
        tf.random.set_seed(3)
        lab = augment.train_map(images, crop="center", colour="lab").numpy()
        differences = np.abs(lab - plain).max(axis=(1, 2, 3))
        if survives:  # by how much depends on the random factor: little near x1
            assert np.median(differences) > 1e-2
        else:
            assert (differences < 1e-4).all()


def test_unknown_colour_is_rejected():
    with pytest.raises(ValueError, match="colour='bright'"):
        augment.train_map(random_images(1), colour="bright")


def test_unknown_crop_is_rejected():
    with pytest.raises(ValueError, match="crop='corner'"):
        augment.train_map(random_images(1), crop="corner")
