"""common.hog against an independent per-pixel implementation of the lab's HOG.

The reference below is written pixel by pixel from the lab's description
(``getHOGfeat``), honouring every parameter, so it is slow but obviously right.
The batch code must match it to 1e-9 on random images, constant images, images
whose gradients are zero or negative, images whose angles land on bin edges,
several sizes and parameters, and float32 as well as float64 pixels.
"""

import math

import numpy as np
import pytest

from common import hog
from common.errors import UserError

EPS = 1e-5


def reference_hog(image, orientations=8, pixels_per_cell=(8, 8), cells_per_block=(2, 2), stride=8):
    """One (H, W) image -> the lab's HOG vector, one pixel at a time."""
    image = np.asarray(image)
    if not np.issubdtype(image.dtype, np.floating):
        image = image.astype(np.float64)  # the documented fix: no uint8 wrap-around
    height, width = image.shape
    angle = np.zeros((height, width))
    magnitude = np.zeros((height, width))
    for i in range(1, height - 1):
        for j in range(1, width - 1):
            # Subtract in the image's dtype (numpy scalars), then widen to float64.
            gx = float(image[i, j - 1] - image[i, j + 1])
            gy = float(image[i + 1, j] - image[i - 1, j])
            if gx + EPS == 0 and gy == 0:
                degrees = 0.0  # the documented fix for the lab's 0/0 (gives 180 below)
            else:
                with np.errstate(divide="ignore"):
                    degrees = np.arctan(np.float64(gy) / np.float64(gx + EPS)) * 180 / math.pi
            if gx < 0:
                degrees += 180
            angle[i, j] = (degrees + 360) % 360
            magnitude[i, j] = np.sqrt(gy ** 2 + gx ** 2)

    cell_height, cell_width = pixels_per_cell
    block_height, block_width = cells_per_block
    cell_rows, cell_columns = height // cell_height, width // cell_width
    block_rows = (cell_rows - block_height) // (stride // cell_height) + 1
    block_columns = (cell_columns - block_width) // (stride // cell_width) + 1
    bin_width = 360 / orientations
    features = np.zeros((block_rows, block_columns, block_height * block_width * orientations))
    for y in range(block_rows):
        for x in range(block_columns):
            block = np.zeros(block_height * block_width * orientations)
            for k in range(block_height):
                for m in range(block_width):
                    top, left = y * stride + k * cell_height, x * stride + m * cell_width
                    cell = np.zeros(orientations)
                    for i in range(top, top + cell_height):
                        for j in range(left, left + cell_width):
                            cell[min(int(angle[i, j] / bin_width), orientations - 1)] += magnitude[i, j]
                    block[(k * block_width + m) * orientations:(k * block_width + m + 1) * orientations] = cell
            features[y, x] = block / np.sqrt(block.sum() ** 2 + EPS)
    return features.ravel()


def reference_batch(images, **parameters):
    return np.stack([reference_hog(image, **parameters) for image in images])


def nasty_images(count, shape, dtype, seed):
    """Pixels drawn from values that put gradients on bin edges and rounding boundaries.

    Differences such as 1 - 0, (1 + eps) - 1, 1e-20 - 0 give ratios gy / (gx + eps)
    of exactly 0, +-1, tiny and huge, so angles fall on 0, 45, 90, 180, ... and on
    values whose ``+ 360`` rounds to 360.0.
    """
    values = np.array([0.0, 1.0, 2.0, 1.0 + EPS, EPS, -EPS, 1e-20, -1e-20, 1e-9, 0.5, 0.5 + EPS, 3e-5, 1e5],
                      dtype=np.float64)
    rng = np.random.default_rng(seed)
    return values[rng.integers(0, len(values), (count, *shape))].astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(32, 32), (16, 16), (24, 40), (35, 29)])
def test_random_images_equal_reference(dtype, shape):
    images = np.random.default_rng(1).random((3, *shape)).astype(dtype)
    expected = reference_batch(images)
    result = hog.hog_features(images)
    assert result.dtype == np.float64
    assert result.shape == expected.shape
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bin_edge_and_rounding_cases_equal_reference(dtype):
    images = nasty_images(12, (16, 24), dtype, seed=2)
    np.testing.assert_allclose(hog.hog_features(images), reference_batch(images), rtol=0, atol=1e-9)


def test_lab_scaled_uint8_pixels_equal_reference():
    # The lab's input: uint8 pixels / 255 in float32, then luma grayscale.
    colour = np.random.default_rng(3).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    gray = hog.grayscale(colour)
    np.testing.assert_allclose(hog.hog_features(gray), reference_batch(gray), rtol=0, atol=1e-9)


@pytest.mark.parametrize(
    "parameters",
    [
        dict(orientations=9),
        dict(orientations=6, pixels_per_cell=(4, 4), cells_per_block=(3, 2), stride=4),
        dict(orientations=8, pixels_per_cell=(4, 4), cells_per_block=(2, 2), stride=8),
        dict(orientations=7, pixels_per_cell=(4, 6), cells_per_block=(1, 1), stride=12),
        dict(orientations=1, pixels_per_cell=(5, 5), cells_per_block=(1, 2), stride=5),
    ],
)
def test_other_parameters_equal_reference(parameters):
    images = np.random.default_rng(4).standard_normal((2, 25, 30)).astype(np.float32)
    expected = reference_batch(images, **parameters)
    result = hog.hog_features(images, **parameters)
    assert result.shape == expected.shape
    assert result.shape[1] == hog.feature_count((25, 30), **parameters)
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_constant_images_give_zero_features(dtype):
    images = np.full((2, 32, 32), 0.7, dtype=dtype)
    result = hog.hog_features(images)
    np.testing.assert_array_equal(result, 0.0)
    np.testing.assert_array_equal(result, reference_batch(images))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zero_gx_and_negative_gradients(dtype):
    rows = np.arange(32, dtype=np.float64)[:, np.newaxis] * np.ones((1, 32))
    images = np.stack([
        rows / 31,               # brighter downwards, gx == 0 everywhere: angle arctan(gy / eps)
        1 - rows / 31,           # darker downwards: negative gy
        rows.T / 31,             # brighter to the right: gx < 0 (the lab's gx is left minus right)
        (rows + rows.T) / 62,    # diagonal: gx < 0 and gy > 0
        (rows.T - rows) / 62,    # gx < 0 and gy < 0
    ]).astype(dtype)
    result = hog.hog_features(images)
    np.testing.assert_allclose(result, reference_batch(images), rtol=0, atol=1e-9)
    # Brighter to the right: the lab's angle is 180 degrees, bin 4 of every cell.
    histograms = hog.cell_histograms(images[2])
    assert (histograms[..., 4] > 0).all()
    assert (np.delete(histograms, 4, axis=-1) == 0).all()


def test_float32_pixels_are_subtracted_in_float32_like_the_lab():
    # 0.1f - 0.3f rounded in float32 differs from the same difference in float64;
    # the lab assigns the float32 difference into a float64 array.
    image = np.zeros((16, 16), dtype=np.float32)
    image[:, ::2] = np.float32(0.1)
    image[:, 1::2] = np.float32(0.3)
    image[::3] += np.float32(0.7)
    np.testing.assert_allclose(hog.hog_features(image), reference_hog(image), rtol=0, atol=1e-12)


def test_integer_images_do_not_wrap_around():
    image = np.random.default_rng(5).integers(0, 256, (32, 32), dtype=np.uint8)
    result = hog.hog_features(image)
    np.testing.assert_allclose(result, hog.hog_features(image.astype(np.float64)), rtol=0, atol=0)
    np.testing.assert_allclose(result, reference_hog(image), rtol=0, atol=1e-9)


def test_zero_over_zero_angle_is_180_degrees():
    # gx == -eps exactly and gy == 0: the lab's arctan(0 / 0) is NaN and int(NaN) raises.
    image = np.zeros((3, 3))
    image[1, 2] = EPS  # gx = image[1, 0] - image[1, 2] = -eps at the centre pixel
    histograms = hog.cell_histograms(image, pixels_per_cell=(3, 3))
    expected = np.zeros(8)
    expected[4] = EPS
    np.testing.assert_allclose(histograms[0, 0], expected, rtol=1e-12)


def test_shapes_and_values_for_cifar_sized_images():
    images = np.random.default_rng(6).random((7, 32, 32), dtype=np.float32)
    features = hog.hog_features(images)
    assert features.shape == (7, 288) == (7, hog.feature_count((32, 32)))
    assert (features >= 0).all()
    # Each block is divided by sqrt(sum**2 + eps): its values sum to just under 1.
    block_sums = features.reshape(7, 9, 32).sum(axis=2)
    assert ((block_sums > 0.99) & (block_sums < 1)).all()
    # One image in, one vector out; a trailing channel axis (the lab's gray images) is accepted.
    np.testing.assert_array_equal(hog.hog_features(images[0]), features[0])
    np.testing.assert_array_equal(hog.hog_features(images[..., np.newaxis]), features)
    assert hog.hog_features(np.zeros((0, 32, 32), np.float32)).shape == (0, 288)


@pytest.mark.parametrize("chunk_size", [1, 3, 5, 1000])
def test_chunk_size_does_not_change_results(chunk_size):
    images = np.random.default_rng(7).random((11, 32, 32), dtype=np.float32)
    np.testing.assert_array_equal(
        hog.hog_features(images, chunk_size=chunk_size), hog.hog_features(images, chunk_size=4)
    )


def test_cell_histograms_hold_every_magnitude_of_their_cell():
    image = np.random.default_rng(8).random((32, 32))
    histograms = hog.cell_histograms(image)
    assert histograms.shape == (4, 4, 8)
    gx = np.zeros((32, 32))
    gy = np.zeros((32, 32))
    gx[1:-1, 1:-1] = image[1:-1, :-2] - image[1:-1, 2:]
    gy[1:-1, 1:-1] = image[2:, 1:-1] - image[:-2, 1:-1]
    magnitude = np.sqrt(gx ** 2 + gy ** 2)
    np.testing.assert_allclose(histograms.sum(axis=-1), magnitude.reshape(4, 8, 4, 8).sum(axis=(1, 3)),
                               rtol=1e-12)
    # Non-square cells; the pixels beyond the last whole cell (row 30, 31) belong to none.
    tall = hog.cell_histograms(image, pixels_per_cell=(6, 4))
    assert tall.shape == (5, 8, 8)
    np.testing.assert_allclose(tall.sum(axis=-1), magnitude[:30].reshape(5, 6, 8, 4).sum(axis=(1, 3)),
                               rtol=1e-12)


def test_grayscale_is_the_lab_luma():
    colour = np.random.default_rng(9).integers(0, 256, (5, 4, 6, 3), dtype=np.uint8)
    scaled = colour.astype(np.float32) / 255.0
    expected = (np.float32(0.3) * scaled[..., 0] + np.float32(0.59) * scaled[..., 1]
                + np.float32(0.11) * scaled[..., 2])
    gray = hog.grayscale(colour, chunk_size=2)
    assert gray.shape == (5, 4, 6) and gray.dtype == np.float32
    np.testing.assert_array_equal(gray, expected)
    np.testing.assert_array_equal(hog.grayscale(colour[0]), expected[0])
    np.testing.assert_array_equal(hog.grayscale(scaled), expected)  # floats are used as they are
    assert hog.grayscale(colour, dtype="float64").dtype == np.float64


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: hog.grayscale(np.zeros((4, 32, 32))), "(..., H, W, 3)"),
        (lambda: hog.hog_features(np.zeros((4, 32, 32, 3))), "hog.grayscale"),
        (lambda: hog.hog_features(np.zeros(32)), "(H, W)"),
        (lambda: hog.hog_features(np.zeros((2, 2, 32, 32, 1))), "(N, H, W)"),
        (lambda: hog.hog_features(np.array([["a"] * 32] * 32)), "real numbers"),
        (lambda: hog.hog_features(np.zeros((2, 12, 32))), "at least 16x16"),
        (lambda: hog.hog_features(np.zeros((32, 32)), orientations=0), "orientations"),
        (lambda: hog.hog_features(np.zeros((32, 32)), orientations=2.5), "orientations"),
        (lambda: hog.hog_features(np.zeros((32, 32)), pixels_per_cell=8), "pixels_per_cell"),
        (lambda: hog.hog_features(np.zeros((32, 32)), pixels_per_cell=(8, 0)), "pixels_per_cell"),
        (lambda: hog.hog_features(np.zeros((32, 32)), cells_per_block=(2, 2, 2)), "cells_per_block"),
        (lambda: hog.hog_features(np.zeros((32, 32)), stride=0), "stride"),
        (lambda: hog.hog_features(np.zeros((32, 32)), stride=4), "multiple of 8"),
        (lambda: hog.hog_features(np.zeros((32, 32)), pixels_per_cell=(4, 6), stride=6), "multiple of 12"),
        (lambda: hog.hog_features(np.zeros((32, 32)), chunk_size=0), "chunk_size"),
    ],
)
def test_validation_errors_say_what_to_change(call, message):
    with pytest.raises(UserError, match=None) as error:
        call()
    assert message in str(error.value)


def test_non_finite_pixels_name_the_image():
    images = np.zeros((5, 32, 32), dtype=np.float32)
    images[3, 10, 10] = np.nan
    with pytest.raises(UserError, match="image 3 contains NaN"):
        hog.hog_features(images, chunk_size=2)
