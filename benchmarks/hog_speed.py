"""
Title: HOG speed: the lab's per-pixel loop, scikit-image, and common.hog
Description: How long HOG features of CIFAR-10's 60,000 32x32 images take. Measured on
    real CIFAR-10 JPEGs, 2 cores shared with other jobs (two runs): the lab's loop 3.3-8.1
    ms per image (198-486 s for 60,000), skimage.feature.hog 12-23 s, common.hog 1.0-2.1
    s (190-230x the lab's loop), with bit-identical features (max difference 0.0).
Run: python benchmarks/hog_speed.py --data-dir DIR

The lab's loop and skimage run on a sample and are scaled to 60,000 images (they
take per-image time that does not depend on the batch); common.hog runs on all
60,000, after a warm-up, best of --repeats runs. Grayscale conversion is timed
on its own: every method needs it once. Without --data-dir (or $LAB_DATA_DIR)
the images are random pixels, which time the same as photographs.

``skimage.feature.hog`` computes a related but different HOG (unsigned
orientations, its own gradient and normalisation); it is here as the library a
student would reach for, with the lab's sizes (8 orientations, 8x8 cells, 2x2
blocks, L1 block norm: 288 values).
"""

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import console, datasets, hog  # noqa: E402

IMAGE_COUNT = 60_000


def lab_loop_hog(image: np.ndarray) -> np.ndarray:
    """The lab's ``getHOGfeat`` as it is written: per-pixel Python loops, 8x8 cells, 2x2 blocks.

    image : (32, 32) float32 grayscale -> (288,) float64.
    """
    height, width = image.shape
    eps = 1e-5
    grad = np.zeros((height, width, 2), dtype=np.double)
    for i in range(1, height - 1):
        for j in range(1, width - 1):
            gx = np.double(image[i, j - 1] - image[i, j + 1])
            gy = np.double(image[i + 1, j] - image[i - 1, j])
            grad[i, j, 0] = np.arctan(gy / (gx + eps)) * 180 / math.pi
            if gx < 0:
                grad[i, j, 0] += 180
            grad[i, j, 0] = (grad[i, j, 0] + 360) % 360
            grad[i, j, 1] = np.sqrt(gy ** 2 + gx ** 2)
    blocks_down, blocks_across = height // 8 - 1, width // 8 - 1
    features = np.zeros((blocks_down, blocks_across, 32))
    for y in range(blocks_down):
        for x in range(blocks_across):
            block = grad[y * 8:y * 8 + 16, x * 8:x * 8 + 16]
            histogram = np.zeros(32, dtype=np.double)
            for k in range(2):
                for m in range(2):
                    cell = block[k * 8:(k + 1) * 8, m * 8:(m + 1) * 8]
                    for i in range(8):
                        for j in range(8):
                            histogram[(k * 2 + m) * 8 + int(cell[i, j, 0] / 45)] += cell[i, j, 1]
            features[y, x] = histogram / np.sqrt(histogram.sum() ** 2 + eps)
    return features.ravel()


def skimage_hog(image: np.ndarray) -> np.ndarray:
    from skimage.feature import hog as skimage_feature_hog

    return skimage_feature_hog(image, orientations=8, pixels_per_cell=(8, 8), cells_per_block=(2, 2),
                               block_norm="L1", feature_vector=True)


def seconds_per_image(function, images) -> float:
    function(images[0])  # warm-up: imports, first-call costs
    start = time.perf_counter()
    for image in images:
        function(image)
    return (time.perf_counter() - start) / len(images)


def load_images(data_dir: Path | None) -> tuple[np.ndarray, str]:
    """(60000, 32, 32, 3) uint8 colour images and a description of where they came from."""
    if data_dir is not None:
        splits = datasets.load_cifar10(data="real", data_dir=data_dir)
        images = np.concatenate([splits.x_train, splits.x_test])[:IMAGE_COUNT]
        return images, splits.source
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (IMAGE_COUNT, 32, 32, 3), dtype=np.uint8), "random pixels"


parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--data-dir", type=Path, default=os.environ.get("LAB_DATA_DIR") or None,
                    help="CIFAR-10 as for the lab scripts (default: $LAB_DATA_DIR, else random pixels)")
parser.add_argument("--lab-sample", type=int, default=200, help="images timed with the lab's loop")
parser.add_argument("--skimage-sample", type=int, default=2000, help="images timed with skimage.feature.hog")
parser.add_argument("--repeats", type=int, default=3, help="runs of common.hog over all images; the best counts")
parser.add_argument("--chunk-size", type=int, default=hog.DEFAULT_CHUNK_SIZE, help="common.hog chunk size")
config = parser.parse_args()

colour, source = load_images(config.data_dir)
print(f"{len(colour):,} images of {colour.shape[1]}x{colour.shape[2]} from {source}; "
      f"{os.cpu_count()} CPU cores", flush=True)

start = time.perf_counter()
gray = hog.grayscale(colour)
grayscale_seconds = time.perf_counter() - start

hog.hog_features(gray[:1000], chunk_size=config.chunk_size)  # warm-up
common_seconds = math.inf
for _ in range(config.repeats):
    start = time.perf_counter()
    features = hog.hog_features(gray, chunk_size=config.chunk_size)
    common_seconds = min(common_seconds, time.perf_counter() - start)

lab_sample = gray[:config.lab_sample]
lab_seconds = seconds_per_image(lab_loop_hog, lab_sample) * len(gray)
difference = max(float(np.abs(lab_loop_hog(image) - features[index]).max())
                 for index, image in enumerate(lab_sample[:50]))

rows = [("lab loop (getHOGfeat)", len(lab_sample), lab_seconds)]
try:
    skimage_sample = gray[:config.skimage_sample]
    rows.append(("skimage.feature.hog", len(skimage_sample), seconds_per_image(skimage_hog, skimage_sample)
                 * len(gray)))
except ImportError:
    print("scikit-image is not installed: its row is left out (pip install scikit-image)")
rows.append((f"common.hog (chunks of {config.chunk_size})", len(gray), common_seconds))

print()
print(f"{'method':34} {'images timed':>12} {'s per 60,000':>13} {'images/s':>10} {'vs lab loop':>11}")
for name, timed, seconds in rows:
    print(f"{name:34} {timed:>12,} {seconds:>13.2f} {len(gray) / seconds:>10,.0f} "
          f"{lab_seconds / seconds:>10.1f}x")
print(f"{'grayscale (once, for every method)':34} {len(gray):>12,} {grayscale_seconds:>13.2f} "
      f"{len(gray) / grayscale_seconds:>10,.0f}")
print(f"\ncommon.hog equals the lab loop on {min(50, len(lab_sample))} images: max |difference| = {difference:.1e}")
print(console.summary_line("hog_speed", lab_loop_s=lab_seconds, common_hog_s=common_seconds,
                           speedup=lab_seconds / common_seconds, grayscale_s=grayscale_seconds,
                           max_difference=f"{difference:.1e}"))
