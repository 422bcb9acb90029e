"""What ``--limit N`` means, in every script: N training images, stratified, and a proportional test share.

The rule
--------
1. Each class gets ``floor(N * share)`` training images, ``share`` being its
   fraction of the training set; the images left over go to the classes with the
   largest remainders, so exactly ``N`` are taken (:func:`stratified_sample`).
2. The test set gives ``round(N * test_size / train_size)`` images (halves round
   up), chosen the same way.
3. ``N`` is refused when it leaves a class without a training image or without a
   test image, and, in scripts that train in batches, when it is smaller than one
   global batch. :func:`check_limit` says so before any data is loaded, naming the
   smallest ``N`` that is accepted.
4. ``N`` at least the training set's size means the whole dataset.

Which images are taken depends on ``seed``; their original order is kept.
"""

from __future__ import annotations

import numpy as np

from common.datasets.sources import CLASS_COUNTS
from common.errors import UserError


def stratified_sample(labels: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``size`` items whose class shares match ``labels``' (seeded).

    Each class gets ``floor(size * share)`` items; the remaining ones go to the
    classes with the largest remainders, so the result holds exactly ``size``.
    """
    labels = np.asarray(labels)
    if size >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    take = allocate(counts, size)
    chosen = [rng.choice(np.flatnonzero(labels == label), count, replace=False)
              for label, count in zip(classes, take, strict=True)]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def allocate(counts, size: int) -> np.ndarray:
    """How many of ``size`` items each class gets (largest remainders; see :func:`stratified_sample`)."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if size >= total:
        return counts.copy()
    exact = counts * size / total
    take = np.floor(exact).astype(np.int64)
    shortfall = size - int(take.sum())
    take[np.argsort(-(exact - take), kind="stable")[:shortfall]] += 1
    return take


def test_size_for(limit: int, train_size: int, test_size: int) -> int:
    """The test images that go with ``limit`` training images: ``round(limit * test / train)``, halves up."""
    if limit >= train_size:
        return test_size
    return min(test_size, (2 * limit * test_size + train_size) // (2 * train_size))


def limit_indices(y_train, y_test, limit: int | None, seed: int = 0, *, name: str = "the dataset"):
    """The training and test indices that ``--limit limit`` keeps (sorted), or ``None`` for all of them.

    Raises
    ------
    UserError
        ``limit`` leaves a class (one that the full split has) without a training or a test image.
    """
    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    if limit is not None and limit >= len(y_train):
        print(f"--limit {limit}: {name} has {len(y_train):,} training images, so all of them are used")
    if limit is None or limit >= len(y_train):
        return None
    train_counts = np.unique(y_train, return_counts=True)[1]
    test_counts = np.unique(y_test, return_counts=True)[1]
    problem = _problem(train_counts, test_counts, limit, None)
    if problem:
        smallest = smallest_limit(train_counts, test_counts)
        why = _problem(train_counts, test_counts, smallest - 1, None) if smallest > 1 else None
        raise UserError(_message(limit, name, problem, smallest, why, len(y_train), len(y_test), len(train_counts)))
    test_size = test_size_for(limit, len(y_train), len(y_test))
    return stratified_sample(y_train, limit, seed), stratified_sample(y_test, test_size, seed + 1)


def check_limit(dataset: str | None, limit: int | None, *, global_batch: int | None = None,
                classes: int | None = None, train_size: int | None = None,
                test_size: int | None = None, train_counts=None, test_counts=None) -> int | None:
    """Refuse a ``--limit`` that the rule above does not accept, before any data is loaded.

    Parameters
    ----------
    dataset : {"mnist", "fashion_mnist", "cifar10"} or a name for the message
        For the three known datasets the real per-class counts are used. For any
        other, give ``classes``, ``train_size`` and ``test_size`` (the classes are
        taken as balanced), e.g. for a folder of photos once it is listed.
    limit : int or None
        The ``--limit`` flag; ``None`` (the whole dataset) is always accepted.
    global_batch : int, optional
        Images in one training step across all replicas; ``N`` must be at least this.
    classes, train_size, test_size : int, optional
        Override (or, for other datasets, give) the split's shape.
    train_counts, test_counts : sequence of int, optional
        Images per class in each half, for a split whose classes are not
        balanced (a folder of photos, once listed); they take the place of the
        three numbers above.

    Returns
    -------
    int or None
        ``limit``, unchanged.

    Raises
    ------
    UserError
        One line: what the limit would leave out, and the smallest accepted ``--limit``.
    """
    if limit is None:
        return None
    if (train_counts is None) != (test_counts is None):
        raise ValueError("check_limit: give both train_counts and test_counts, or neither")
    if train_counts is not None:
        train_counts, test_counts = np.asarray(train_counts, dtype=np.int64), np.asarray(test_counts, dtype=np.int64)
    elif dataset in CLASS_COUNTS and classes is None and train_size is None and test_size is None:
        train_counts, test_counts = (np.asarray(counts) for counts in CLASS_COUNTS[dataset])
    else:
        known_train, known_test = CLASS_COUNTS.get(dataset, (None, None))
        classes = classes or (len(known_train) if known_train else None)
        train_size = train_size or (sum(known_train) if known_train else None)
        test_size = test_size or (sum(known_test) if known_test else None)
        if not (classes and train_size and test_size):
            raise ValueError(f"check_limit({dataset!r}): give classes, train_size and test_size for a dataset "
                             f"other than {', '.join(CLASS_COUNTS)}")
        train_counts, test_counts = _balanced(train_size, classes), _balanced(test_size, classes)
    problem = _problem(train_counts, test_counts, limit, global_batch)
    if problem:
        smallest = smallest_limit(train_counts, test_counts, global_batch)
        why = _problem(train_counts, test_counts, smallest - 1, global_batch) if smallest > 1 else None
        raise UserError(_message(limit, dataset or "the dataset", problem, smallest, why,
                                 int(train_counts.sum()), int(test_counts.sum()), len(train_counts)))
    return limit


def smallest_limit(train_counts, test_counts, global_batch: int | None = None) -> int:
    """The smallest ``--limit`` the rule accepts for a split with these per-class counts."""
    train_counts, test_counts = np.asarray(train_counts), np.asarray(test_counts)
    train_size = int(train_counts.sum())
    start = max(len(train_counts), global_batch or 1)
    for limit in range(start, train_size):
        if not _problem(train_counts, test_counts, limit, global_batch):
            return limit
    return train_size


def _problem(train_counts, test_counts, limit: int, global_batch: int | None) -> str | None:
    train_counts, test_counts = np.asarray(train_counts), np.asarray(test_counts)
    train_size, test_size = int(train_counts.sum()), int(test_counts.sum())
    if global_batch and min(limit, train_size) < global_batch:
        return f"it is smaller than one global batch ({global_batch} images)"
    if limit >= train_size:
        return None
    if allocate(train_counts, limit).min() < 1:
        return "it would leave a class without a training image"
    share = test_size_for(limit, train_size, test_size)
    if allocate(test_counts, share).min() < 1:
        plural = "" if share == 1 else "s"
        return (f"it would leave a class without a test image: its test share is {share} image{plural} "
                f"for {len(test_counts)} classes")
    return None


def _message(limit, name, problem, smallest, why_not_less, train_size, test_size, classes) -> str:
    # Say what rules out the numbers just below the smallest: "57" alone looks arbitrary when the
    # batch is 32 and the reason is that every class needs a test image.
    because = (f" (at --limit {smallest - 1}, {why_not_less})"
               if why_not_less and why_not_less.split(":")[0] != problem.split(":")[0] else "")
    return (f"--limit {limit} is too small for {name} ({train_size:,} training / {test_size:,} test images, "
            f"{classes} classes): {problem}. The smallest accepted is --limit {smallest}{because}; raise --limit "
            f"to {smallest} or more.")


def _balanced(size: int, classes: int) -> np.ndarray:
    counts = np.full(classes, size // classes, dtype=np.int64)
    counts[: size % classes] += 1
    return counts
