"""Plan a write: which image goes to which split and shard, in which order (pure functions, no files).

The plan depends only on the good images, the seed and the shard settings
(``num_shards``, or ``target_shard_bytes`` with at least :data:`DEFAULT_MIN_SHARDS`
shards per split), never on the number of workers or on timing. So the same
inputs and settings give byte-identical shards, and a finished folder is
recognised on a re-run, whatever ``workers`` it asks for:

1. :func:`split_images`: a stratified, seeded train/test/validation split (or the
   split folders SRC already has), each class's images in a seeded order;
2. :func:`plan_shards`: per split, classes dealt round-robin over the shards, so
   every shard holds each class within one image of the others; each shard's
   order shuffled with a seed of its own, and a digest of everything that
   decides the shard's bytes (``plan_sha256``).
"""

import collections
import hashlib
import json
import math
import random

from .encode import REENCODE_JPEG_QUALITY
from .sidecar import FORMAT_VERSION, shard_file_name

#: Default shard size: the tf.data guide suggests files of 100 MB or more.
DEFAULT_TARGET_SHARD_BYTES = 100 * 1024 * 1024

#: Shards per split at least (fewer only when a split has fewer images), so that small
#: sets are still written in parallel and read with parallel interleave. A constant,
#: not the worker count: the shards must not depend on the machine that wrote them.
DEFAULT_MIN_SHARDS = 4


def seeded_random(text):
    """``random.Random`` seeded with a string that may hold a non-UTF-8 file name.

    ``Random(str)`` hashes ``str.encode()``, which fails on the surrogates that stand
    for undecodable bytes in a name; the same bytes with ``surrogateescape`` give
    the same generator for every valid name, so earlier outputs stay identical.
    """
    return random.Random(text.encode("utf-8", "surrogateescape"))


def _held_out_counts(sizes, fraction, caps, seed, what):
    """How many images of each class go to a held-out split: ``fraction`` of the total, spread by class.

    Each class gets ``floor(n * fraction)`` (at most its cap), and the images still
    needed to reach ``round(total * fraction)`` go one each to the classes with the
    largest remainders (ties broken by a seeded order). Rounding each class on its
    own would give 33% instead of 20% for 10,000 classes of 3 images.
    """
    counts = {name: min(math.floor(size * fraction), caps[name]) for name, size in sizes.items()}
    target = math.floor(sum(sizes.values()) * fraction + 0.5)
    extra = target - sum(counts.values())
    if extra > 0:
        order = sorted(
            (name for name in sizes if counts[name] < caps[name]),
            key=lambda name: (-(sizes[name] * fraction - math.floor(sizes[name] * fraction)),
                              hashlib.sha256(f"{seed}/{what}/{name}".encode("utf-8", "surrogateescape")).digest()),
        )
        for name in order[:extra]:
            counts[name] += 1
    return counts


def split_images(scan, test_fraction=0.2, seed=0, val_fraction=0.0):
    """Assign every good image to a split.

    Parameters
    ----------
    scan : ScanResult
    test_fraction, val_fraction : float
        Shares of all images that go to ``test`` and ``validation``, spread over
        the classes in proportion to their sizes (see :func:`_held_out_counts`); at least
        one image of each class stays in ``train``. Ignored when SRC is already split.
    seed : int

    Returns
    -------
    dict[str, list of ImageFile]
        Split name to images; each class's images in a seeded random order.
    """
    if scan.layout == "splits":
        splits = collections.defaultdict(list)
        for image in scan.images:
            splits[image.split].append(image)
        for split, images in splits.items():
            _stratified_shuffle(images, seed, split)
        return dict(sorted(splits.items()))
    by_class = collections.defaultdict(list)
    for image in scan.images:
        by_class[image.class_name].append(image)
    sizes = {name: len(by_class.get(name, [])) for name in scan.class_names}
    test_counts = _held_out_counts(sizes, test_fraction, {name: max(size - 1, 0) for name, size in sizes.items()},
                            seed, "test")
    val_counts = _held_out_counts(sizes, val_fraction,
                           {name: max(size - 1 - test_counts[name], 0) for name, size in sizes.items()},
                           seed, "validation")
    train, validation, test = [], [], []
    for class_name in scan.class_names:
        images = sorted(by_class.get(class_name, []), key=lambda image: image.relative_path)
        # A string seed is hashed with SHA-512 by random.Random: stable across runs and platforms.
        seeded_random(f"{seed}/split/{class_name}").shuffle(images)
        test_count, val_count = test_counts[class_name], val_counts[class_name]
        test.extend(images[:test_count])
        validation.extend(images[test_count : test_count + val_count])
        train.extend(images[test_count + val_count :])
    splits = {"train": train}
    if test:
        splits["test"] = test
    if validation:
        splits["validation"] = validation
    return dict(sorted(splits.items()))


def split_warnings(scan, splits, test_fraction, val_fraction, explicit_fractions):
    """What a user should know about the split shares (list of messages)."""
    if scan.layout == "splits":
        messages = []
        if explicit_fractions:
            messages.append("SRC is split already (its top folders are splits): test and validation fractions "
                            "are ignored")
        if not splits.get("test"):
            messages.append("SRC is split already and has no test/ folder (or no usable image in it): the dataset "
                            "has no test split; add SRC/test/<class>/ for one")
        members = {split: {image.class_name for image in images} for split, images in splits.items() if images}
        for split, present in members.items():
            missing = [name for name in scan.class_names
                       if name not in present and any(name in other for other in members.values())]
            if missing:
                shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
                elsewhere = sorted({other for other, classes in members.items() if set(missing) & classes})
                messages.append(f"the {split} split has no image of {len(missing)} class(es) that "
                                f"{' and '.join(elsewhere)} {'has' if len(elsewhere) == 1 else 'have'}: {shown}")
        return messages
    messages = []
    total = sum(len(images) for images in splits.values())
    for split, fraction in (("test", test_fraction), ("validation", val_fraction)):
        if not fraction:
            continue
        members = collections.Counter(image.class_name for image in splits.get(split, []))
        without = [name for name, count in scan.class_counts().items() if count and not members[name]]
        if without:
            shown = ", ".join(without[:5]) + (f" and {len(without) - 5} more" if len(without) > 5 else "")
            messages.append(f"{len(without)} class(es) have no {split} image (too few images for a share of "
                            f"{fraction:g}): {shown}")
        share = sum(members.values()) / total if total else 0.0
        if abs(share - fraction) > 0.01 + 1 / max(total, 1):
            messages.append(f"the {split} split holds {share:.1%} of the images, not {fraction:.1%}: too many "
                            "classes are too small to give their share")
    return messages


def _stratified_shuffle(images, seed, split):
    """Sort by class, shuffle within each class, in place."""
    by_class = collections.defaultdict(list)
    for image in sorted(images, key=lambda image: image.relative_path):
        by_class[image.class_name].append(image)
    images.clear()
    for class_name in sorted(by_class):
        members = by_class[class_name]
        seeded_random(f"{seed}/{split}/{class_name}").shuffle(members)
        images.extend(members)


def shard_count(images, num_shards, target_shard_bytes, min_shards=DEFAULT_MIN_SHARDS):
    """How many shards a split gets.

    ``num_shards`` wins when given. Otherwise enough shards that each is about
    ``target_shard_bytes``, and at least ``min_shards`` (see
    :data:`DEFAULT_MIN_SHARDS`). Never more shards than images.
    """
    if not images:
        return 0
    if num_shards is not None:
        count = num_shards
    else:
        total_bytes = sum(image.num_bytes for image in images)
        count = max(math.ceil(total_bytes / target_shard_bytes), min_shards)
    return max(1, min(count, len(images)))


def plan_shards(splits, num_shards=None, target_shard_bytes=DEFAULT_TARGET_SHARD_BYTES, seed=0, stored_as=None):
    """Decide which image goes to which shard, in which order.

    Parameters
    ----------
    splits : dict[str, list of ImageFile]
        From :func:`split_images`: grouped by class, shuffled within class.
    num_shards : int, optional
        Shards per split (capped at the split's image count).
    target_shard_bytes : int
        Used when ``num_shards`` is None (with at least :data:`DEFAULT_MIN_SHARDS`
        shards per split, or one per image when there are fewer).
    seed : int
    stored_as : dict, optional
        ``max_side``, ``jpeg_quality`` and ``apply_orientation`` when any is in use:
        part of every shard's digest.

    Returns
    -------
    list of dict
        One per shard: ``split``, ``file``, ``images`` (list of ImageFile, in
        record order) and ``plan_sha256`` (digest of everything that decides the
        shard's bytes, used to recognise a finished shard on a re-run).
    """
    plans = []
    for split, images in splits.items():
        count = shard_count(images, num_shards, target_shard_bytes)
        for index in range(count):
            # Dealing class-grouped images round-robin spreads every class evenly.
            members = list(images[index::count])
            name = shard_file_name(split, index, count)
            random.Random(f"{seed}/{name}").shuffle(members)
            # The re-encode decision is in too: shards written before a JPEG without its
            # end-of-image marker was re-encoded (it was stored as is) are not reused.
            # (Resize and orientation settings only when used: folders written without them stay reusable.)
            digest_input = json.dumps(
                [FORMAT_VERSION, REENCODE_JPEG_QUALITY, name,
                 [[image.relative_path, image.sha256, image.label, image.class_name, image.reencode]
                  for image in members]] + ([stored_as] if stored_as else []),
                ensure_ascii=True, sort_keys=True,
            )
            plans.append({
                "split": split,
                "file": name,
                "images": members,
                "plan_sha256": hashlib.sha256(digest_input.encode("ascii")).hexdigest(),
            })
    return plans
