"""One meaning for --limit: N training images, stratified, a proportional test share, refused early when too small."""

import numpy as np
import pytest

from common import datasets
from common.errors import UserError

from fakes import write_cifar_archive


@pytest.mark.parametrize(("dataset", "global_batch", "smallest"), [
    ("mnist", None, 57),          # 57 training images give round(57 / 6) = 10 test images, one per digit
    ("mnist", 32, 57),            # lab01: batches of 32
    ("fashion_mnist", None, 57),
    ("cifar10", None, 48),        # round(48 / 5) = 10 test images
    ("cifar10", 64, 64),          # lab04 / lab03's pipeline model on one replica
    ("cifar10", 128, 128),        # lab03 with two replicas
])
def test_check_limit_names_the_smallest_accepted_limit(dataset, global_batch, smallest):
    with pytest.raises(UserError) as raised:
        datasets.check_limit(dataset, smallest - 1, global_batch=global_batch)
    message = str(raised.value)
    assert f"--limit {smallest - 1} is too small for {dataset}" in message
    assert f"the smallest accepted is --limit {smallest}".lower() in message.lower()
    assert "\n" not in message
    assert datasets.check_limit(dataset, smallest, global_batch=global_batch) == smallest


def test_check_limit_says_what_is_wrong():
    with pytest.raises(UserError, match="without a training image"):
        datasets.check_limit("cifar10", 3)
    with pytest.raises(UserError, match=r"without a test image: its test share is 9 images for 10 classes"):
        datasets.check_limit("cifar10", 47)
    with pytest.raises(UserError, match=r"smaller than one global batch \(64 images\)"):
        datasets.check_limit("cifar10", 50, global_batch=64)


def test_check_limit_accepts_none_and_the_whole_dataset():
    assert datasets.check_limit("cifar10", None, global_batch=64) is None
    assert datasets.check_limit("mnist", 10**6) == 10**6


def test_check_limit_for_other_datasets_takes_their_sizes():
    # A folder of photos, listed but not decoded: 10 classes, 5,734 / 1,434 images.
    sizes = {"classes": 10, "train_size": 5734, "test_size": 1434}
    with pytest.raises(UserError, match=r"smallest accepted is --limit 38\b"):
        datasets.check_limit("oregon_wildlife", 30, **sizes)
    assert datasets.check_limit("oregon_wildlife", 38, **sizes) == 38
    with pytest.raises(UserError, match="--limit 64"):
        datasets.check_limit("oregon_wildlife", 38, global_batch=64, **sizes)
    with pytest.raises(ValueError, match="give classes, train_size and test_size"):
        datasets.check_limit("oregon_wildlife", 38)


def test_check_limit_agrees_with_the_subset_the_loaders_take():
    """For every N, check_limit (sizes only) refuses exactly when the subset of the real labels would."""
    data = datasets.make_cifar10_standin(train_size=1000, test_size=200, seed=0)
    data.y_train[:] = np.arange(1000) % 10  # balanced, as check_limit assumes
    data.y_test[:] = np.arange(200) % 10
    for limit in range(1, 120):
        try:
            datasets.check_limit("shapes", limit, classes=10, train_size=1000, test_size=200)
            refused = False
        except UserError:
            refused = True
        try:
            small = data.subset(limit, seed=limit)
        except UserError:
            assert refused, limit
            continue
        assert not refused, limit
        assert len(small.x_train) == limit and len(small.x_test) == datasets.limits.test_size_for(limit, 1000, 200)
        assert set(small.y_train) == set(small.y_test) == set(range(10))


@pytest.mark.parametrize("seed", [0, 1])
def test_smallest_limits_fit_the_standins_too(seed):
    cifar = datasets.make_cifar10_standin(seed=seed).subset(48, seed)
    assert len(set(cifar.y_test)) == 10 and len(cifar.x_test) == 10
    mnist = datasets.load_mnist(data="standin", limit=57, seed=seed)
    assert len(set(mnist.y_test)) == 10 and len(mnist.x_train) == 57


def test_loaders_refuse_a_limit_that_leaves_a_class_out(tmp_path):
    write_cifar_archive(tmp_path / "cifar-10-python.tar.gz", np.random.default_rng(0))  # 100 train / 20 test
    with pytest.raises(UserError, match=r"--limit 3 is too small for cifar10 .* raise --limit to"):
        datasets.load_cifar10(data="real", data_dir=tmp_path, limit=3)
    small = datasets.load_cifar10(data="real", data_dir=tmp_path, limit=50)
    assert len(small.x_train) == 50 and len(small.x_test) == 10


def test_subset_is_proportional_with_halves_rounding_up():
    data = datasets.make_cifar10_standin(train_size=1000, test_size=200, seed=0)
    assert len(data.subset(100).x_test) == 20
    assert len(data.subset(52).x_test) == 10   # 10.4
    assert len(data.subset(53).x_test) == 11   # 10.6
    assert datasets.limits.test_size_for(25, 50, 5) == 3  # 2.5 rounds up


def test_cifar10_batches_hold_the_same_stratified_subset_as_load_cifar10(tmp_path):
    write_cifar_archive(tmp_path / "cifar-10-python.tar.gz", np.random.default_rng(1))
    arrays = datasets.load_cifar10(data="real", data_dir=tmp_path, limit=60, seed=4)
    batches = datasets.cifar10_batches(data="real", data_dir=tmp_path, seed=4, limit=60)
    parts = [datasets.read_cifar10_batch(path) for path in batches.train_files]
    assert [len(labels) for _, labels in parts] == [12] * 5
    rows = np.concatenate([rows for rows, _ in parts])
    np.testing.assert_array_equal(datasets.rows_to_images(rows), arrays.x_train)
    test_rows, test_labels = datasets.read_cifar10_batch(batches.test_files[0])
    np.testing.assert_array_equal(test_labels, arrays.y_test)
    assert batches.limit == 60 and "--limit 60" in batches.source
    # The same call again reuses the folder; no limit gives the full, extracted files.
    assert datasets.cifar10_batches(data="real", data_dir=tmp_path, seed=4, limit=60).path == batches.path
    full = datasets.cifar10_batches(data="real", data_dir=tmp_path, seed=4)
    assert full.limit is None and len(datasets.read_cifar10_batch(full.train_files[0])[1]) == 20


def test_cifar10_batches_limit_on_the_standin():
    batches = datasets.cifar10_batches(data="standin", seed=2, limit=300)
    arrays = datasets.load_cifar10(data="standin", seed=2, limit=300)
    labels = np.concatenate([datasets.read_cifar10_batch(path)[1] for path in batches.train_files])
    np.testing.assert_array_equal(labels, arrays.y_train)
    assert batches.is_standin and batches.limit == 300
    with pytest.raises(UserError, match="--limit 3 is too small"):
        datasets.cifar10_batches(data="standin", limit=3)


def test_cifar10_batches_limit_on_an_image_folder_writes_only_the_subset(tmp_path, empty_keras_home):
    from PIL import Image

    rng = np.random.default_rng(3)
    for split, count in (("train", 10), ("test", 2)):
        for name in ("cat", "dog", "eel", "fox", "gnu"):
            (tmp_path / split / name).mkdir(parents=True)
            for index in range(count):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
                    tmp_path / split / name / f"{index}.png")
    batches = datasets.cifar10_batches(data="real", data_dir=tmp_path, limit=25, seed=1)
    arrays = datasets.load_cifar10(data="real", data_dir=tmp_path, limit=25, seed=1)
    rows = np.concatenate([datasets.read_cifar10_batch(path)[0] for path in batches.train_files])
    np.testing.assert_array_equal(datasets.rows_to_images(rows), arrays.x_train)
    cache = empty_keras_home / "datasets"
    written = [path for path in cache.iterdir() if not path.name.startswith(".")]
    assert len(written) == 2  # the decoded .npz and the subset, no full copy of the batches
    assert len(list(cache.glob("cifar10-from-images-*.npz"))) == len(list(cache.glob("*-limit25-seed1-*"))) == 1
    # A limit that covers everything is the full set.
    assert datasets.cifar10_batches(data="real", data_dir=tmp_path, limit=10**6).limit is None
