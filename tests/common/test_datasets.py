"""common.datasets on small files written here in the real formats. No network, ever."""

import dataclasses
import hashlib

import numpy as np
import pytest
from PIL import Image

from common import datasets
from common.errors import UserError

from fakes import expected_images, small_mnist, unboxed, write_cifar_archive, write_idx, write_idx_folder


def serve_from(monkeypatch, key, url, md5=None):
    """Point one entry of the download table at ``url`` (keeping the real checksum unless ``md5`` is given)."""
    remote = datasets.sources.REMOTE_FILES[key]
    monkeypatch.setitem(datasets.sources.REMOTE_FILES, key,
                        dataclasses.replace(remote, url=url, md5=md5 or remote.md5))

# ---------------------------------------------------------------------------
# MNIST


def test_mnist_from_npz(tmp_path):
    arrays = small_mnist(np.random.default_rng(0))
    np.savez(tmp_path / "mnist.npz", x_train=arrays[0], y_train=arrays[1], x_test=arrays[2], y_test=arrays[3])
    data = datasets.load_mnist(data="real", data_dir=tmp_path)
    assert data.x_train.shape == (30, 28, 28) and data.x_train.dtype == np.uint8
    np.testing.assert_array_equal(data.x_test, arrays[2])
    np.testing.assert_array_equal(data.y_train, arrays[1])
    assert not data.is_standin and "mnist.npz" in data.source


@pytest.mark.parametrize("gzipped", [True, False])
def test_mnist_from_idx_files(tmp_path, gzipped):
    arrays = small_mnist(np.random.default_rng(1))
    write_idx_folder(tmp_path, arrays, gzipped)
    data = datasets.load_mnist(data="real", data_dir=tmp_path)
    for loaded, written in zip((data.x_train, data.y_train, data.x_test, data.y_test), arrays, strict=True):
        np.testing.assert_array_equal(loaded, written)
    assert data.y_train.dtype == np.int64


def test_fashion_mnist_from_idx_files_has_fashion_names(tmp_path):
    write_idx_folder(tmp_path, small_mnist(np.random.default_rng(2)))
    data = datasets.load_mnist(data="real", data_dir=tmp_path, dataset="fashion_mnist")
    assert data.class_names[9] == "Ankle boot" and data.name == "fashion_mnist"


def test_idx_with_wrong_magic_number_names_the_file(tmp_path):
    write_idx_folder(tmp_path, small_mnist(np.random.default_rng(3)))
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((4, 28), dtype=np.uint8))  # 2-D: magic 0x802
    with pytest.raises(UserError, match="train-images-idx3-ubyte.gz is not an IDX file"):
        datasets.load_mnist(data_dir=tmp_path)


def test_truncated_idx_is_reported(tmp_path):
    write_idx_folder(tmp_path, small_mnist(np.random.default_rng(4)))
    target = tmp_path / "t10k-images-idx3-ubyte.gz"
    target.write_bytes(target.read_bytes()[:-40])
    with pytest.raises(UserError, match="t10k-images-idx3-ubyte.gz is truncated"):
        datasets.load_mnist(data_dir=tmp_path)


def test_missing_idx_file_is_named(tmp_path):
    write_idx_folder(tmp_path, small_mnist(np.random.default_rng(5)))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte.gz"):
        datasets.load_mnist(data_dir=tmp_path)


def test_data_dir_without_mnist_lists_what_was_expected(tmp_path):
    with pytest.raises(UserError, match="mnist.npz or train-images-idx3-ubyte.gz"):
        datasets.load_mnist(data="auto", data_dir=tmp_path)


def test_mnist_cached_by_keras_is_used(empty_keras_home):
    arrays = small_mnist(np.random.default_rng(6))
    (empty_keras_home / "datasets").mkdir()
    np.savez(empty_keras_home / "datasets" / "mnist.npz", x_train=arrays[0], y_train=arrays[1],
             x_test=arrays[2], y_test=arrays[3])
    data = datasets.load_mnist(data="real")
    assert len(data.x_train) == 30 and not data.is_standin


def test_offline_auto_falls_back_to_standin_with_banner(capsys):
    data = datasets.load_mnist(data="auto")
    assert data.is_standin and data.describe()["is_standin"] is True
    assert data.x_train.shape == (4000, 28, 28) and data.x_test.shape == (1000, 28, 28)
    assert np.bincount(data.y_test).tolist() == [100] * 10
    output = capsys.readouterr().out
    assert "OFFLINE STAND-IN" in output and "LAB_OFFLINE" in output


def test_offline_real_fails_with_instructions():
    with pytest.raises(UserError) as raised:
        datasets.load_mnist(data="real")
    message = str(raised.value)
    assert "mnist.npz" in message and "--data-dir" in message and "--data auto" in message


def test_unknown_choices_are_rejected():
    with pytest.raises(UserError, match="data='online'"):
        datasets.load_mnist(data="online")
    with pytest.raises(UserError, match="dataset='kmnist'"):
        datasets.load_mnist(dataset="kmnist")


# ---------------------------------------------------------------------------
# CIFAR-10


def test_cifar10_from_archive_in_data_dir(tmp_path):
    batches = write_cifar_archive(tmp_path / "cifar-10-python.tar.gz", np.random.default_rng(7))
    data = datasets.load_cifar10(data="real", data_dir=tmp_path)
    assert data.x_train.shape == (100, 32, 32, 3) and data.x_test.shape == (20, 32, 32, 3)
    np.testing.assert_array_equal(data.x_train[:20], expected_images(batches["data_batch_1"][b"data"]))
    np.testing.assert_array_equal(data.y_test, batches["test_batch"][b"labels"])
    assert data.class_names == datasets.CIFAR10_CLASSES


def test_cifar10_batches_folder_is_the_real_layout(tmp_path):
    batches = write_cifar_archive(tmp_path / "cifar-10-python.tar.gz", np.random.default_rng(8))
    folder = datasets.cifar10_batches(data="real", data_dir=tmp_path)
    assert [path.name for path in folder.train_files] == datasets.CIFAR10_TRAIN_BATCHES
    rows, labels = datasets.read_cifar10_batch(folder.train_files[2])
    np.testing.assert_array_equal(rows, batches["data_batch_3"][b"data"])
    assert labels.tolist() == batches["data_batch_3"][b"labels"]
    # The extracted folder itself is also an accepted --data-dir.
    again = datasets.load_cifar10(data="real", data_dir=folder.path)
    assert len(again.x_train) == 100


def test_truncated_archive_is_reported_and_leaves_nothing_trusted(tmp_path, empty_keras_home):
    write_cifar_archive(tmp_path / "cifar-10-python.tar.gz", np.random.default_rng(9), truncate_to=0.6)
    with pytest.raises(UserError, match="truncated or corrupt"):
        datasets.load_cifar10(data="real", data_dir=tmp_path)
    leftovers = list((empty_keras_home / "datasets").iterdir())
    assert leftovers == [], f"a failed extraction left {leftovers}"


def test_cifar10_from_image_folder(tmp_path):
    rng = np.random.default_rng(10)
    written = {}
    for split, count in (("train", 3), ("test", 2)):
        for name in ("cat", "dog"):
            (tmp_path / split / name).mkdir(parents=True)
            for index in range(count):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / split / name / f"{index}.png")
                written[(split, name, index)] = pixels
    data = datasets.load_cifar10(data="real", data_dir=tmp_path)
    assert data.class_names == ["cat", "dog"]
    assert data.x_train.shape == (6, 32, 32, 3) and sorted(data.y_train.tolist()) == [0, 0, 0, 1, 1, 1]
    train_set = {image.tobytes() for image in data.x_train}
    assert train_set == {pixels.tobytes() for (split, _, _), pixels in written.items() if split == "train"}
    # Read twice: the second time comes from the .npz cache and is identical.
    again = datasets.load_cifar10(data="real", data_dir=tmp_path)
    np.testing.assert_array_equal(again.x_train, data.x_train)
    np.testing.assert_array_equal(again.y_train, data.y_train)


def test_image_folder_cache_follows_the_images(tmp_path, empty_keras_home):
    """A new image in a class folder gives a new cache; a damaged cache file is rebuilt."""
    for split in ("train", "test"):
        for name in ("cat", "dog"):
            (tmp_path / split / name).mkdir(parents=True)
            for index in range(2):
                Image.new("RGB", (32, 32), (index * 90, 40, 200)).save(tmp_path / split / name / f"{index}.png")
    assert len(datasets.load_cifar10(data="real", data_dir=tmp_path).x_train) == 4
    Image.new("RGB", (32, 32), (5, 5, 5)).save(tmp_path / "train" / "dog" / "extra.png")  # the class folder changes
    assert len(datasets.load_cifar10(data="real", data_dir=tmp_path).x_train) == 5
    caches = sorted((empty_keras_home / "datasets").glob("cifar10-from-images-*.npz"))
    assert len(caches) == 2
    newest = max(caches, key=lambda path: path.stat().st_mtime_ns)
    newest.write_bytes(newest.read_bytes()[:100])  # cut short, as by a full disk
    assert len(datasets.load_cifar10(data="real", data_dir=tmp_path).x_train) == 5


def test_png_folder_of_a_batch_file_is_written_once_and_cleaned_with_the_cache(tmp_path, empty_keras_home, capsys):
    splits = datasets.make_cifar10_standin(train_size=50, test_size=40, seed=3)
    batches = datasets.write_cifar10_batches(splits, tmp_path / "batches")
    test_batch = batches / datasets.CIFAR10_TEST_BATCH
    folder = datasets.cifar10_png_folder(str(test_batch), splits.class_names, per_class=2)  # lab04 passes a str
    assert sorted(child.name for child in folder.iterdir()) == sorted(splits.class_names)
    first_cat = np.flatnonzero(splits.y_test == 0)[0]
    with Image.open(folder / splits.class_names[0] / "0000.png") as image:
        np.testing.assert_array_equal(np.asarray(image), splits.x_test[first_cat])
    assert sum(1 for _ in folder.glob("*/*.png")) == sum(min(2, int((splits.y_test == label).sum()))
                                                          for label in range(10))
    [line] = cache_lines(capsys.readouterr().out)
    assert_announced(line, f"{sum(1 for _ in folder.glob('*/*.png'))} PNG files of test_batch", folder)
    stamp = folder.stat().st_mtime_ns
    assert datasets.cifar10_png_folder(test_batch, splits.class_names, per_class=2) == folder
    assert folder.stat().st_mtime_ns == stamp  # reused, not written again
    assert not cache_lines(capsys.readouterr().out)
    assert folder.name in {entry["name"] for entry in datasets.clean_cache()}
    assert not folder.exists()


def test_image_folder_with_wrong_size_names_the_file(tmp_path):
    for split in ("train", "test"):
        (tmp_path / split / "cat").mkdir(parents=True)
        Image.new("RGB", (40, 30)).save(tmp_path / split / "cat" / "big.png")
    with pytest.raises(UserError, match=r"big.png is 40x30: CIFAR-10 images are 32x32"):
        datasets.load_cifar10(data_dir=tmp_path)


def test_cifar10_data_dir_without_data_lists_the_layouts(tmp_path):
    with pytest.raises(UserError, match="cifar-10-python.tar.gz, an extracted cifar-10-batches-py/"):
        datasets.load_cifar10(data_dir=tmp_path)


def test_cifar10_download_checks_md5_and_extracts(tmp_path, monkeypatch, empty_keras_home):
    archive = tmp_path / "served" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    write_cifar_archive(archive, np.random.default_rng(11))
    serve_from(monkeypatch, "cifar10", archive.as_uri(), md5=hashlib.md5(archive.read_bytes()).hexdigest())
    data = datasets.load_cifar10(data="real")
    assert len(data.x_train) == 100 and not data.is_standin
    assert (empty_keras_home / "datasets" / "cifar-10-python.tar.gz").is_file()
    assert (empty_keras_home / "datasets" / "cifar-10-batches-py" / "test_batch").is_file()


def test_cifar10_download_with_md5_mismatch_keeps_nothing(tmp_path, monkeypatch, empty_keras_home, capsys):
    archive = tmp_path / "served" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    write_cifar_archive(archive, np.random.default_rng(12))
    serve_from(monkeypatch, "cifar10", archive.as_uri())  # the real MD5 cannot match
    with pytest.raises(UserError, match="arrived corrupt: md5"):
        datasets.load_cifar10(data="real")
    assert not (empty_keras_home / "datasets").exists(), "a failed download left its folder behind"
    # auto falls back to the stand-in and says why.
    data = datasets.load_cifar10(data="auto", limit=100)
    banner_text = unboxed(capsys.readouterr().out)
    assert data.is_standin and "arrived corrupt: md5" in banner_text and "is damaged: replace it" in banner_text
    assert not list(empty_keras_home.rglob("*.tar.gz"))


def test_download_writes_only_complete_checked_files(tmp_path):
    source = tmp_path / "file.bin"
    source.write_bytes(b"x" * 5000)
    target = tmp_path / "cache" / "file.bin"
    datasets.download(source.as_uri(), target, md5=hashlib.md5(b"x" * 5000).hexdigest())
    assert target.read_bytes() == b"x" * 5000
    with pytest.raises(datasets.DownloadError, match="sha256"):
        datasets.download(source.as_uri(), tmp_path / "cache" / "other.bin", sha256="0" * 64)
    assert sorted(path.name for path in (tmp_path / "cache").iterdir()) == ["file.bin"]


def test_download_of_missing_url_is_a_download_error(tmp_path):
    with pytest.raises(datasets.DownloadError, match="could not download"):
        datasets.download((tmp_path / "absent").as_uri(), tmp_path / "target")


def test_network_downloads_refused_offline(tmp_path):
    with pytest.raises(datasets.DownloadError, match="LAB_OFFLINE"):
        datasets.download("https://example.invalid/file", tmp_path / "file")


def test_cifar10_offline_auto_and_real(capsys):
    data = datasets.load_cifar10(data="auto", limit=500)
    assert data.is_standin and data.x_train.shape == (500, 32, 32, 3)
    assert "OFFLINE STAND-IN" in capsys.readouterr().out
    with pytest.raises(UserError, match="cifar-10-python.tar.gz"):
        datasets.load_cifar10(data="real")


def test_standin_batches_folder_round_trips():
    folder = datasets.cifar10_batches(data="standin", seed=3)
    standin = datasets.make_cifar10_standin(seed=3)
    rows = np.concatenate([datasets.read_cifar10_batch(path)[0] for path in folder.train_files])
    np.testing.assert_array_equal(datasets.rows_to_images(rows), standin.x_train)
    assert folder.is_standin and folder.class_names == standin.class_names


# ---------------------------------------------------------------------------
# Stand-in, subsets and conversions


def test_cifar10_standin_is_seeded_balanced_and_colourful():
    first = datasets.make_cifar10_standin(train_size=400, test_size=100, seed=5)
    second = datasets.make_cifar10_standin(train_size=400, test_size=100, seed=5)
    np.testing.assert_array_equal(first.x_train, second.x_train)
    assert first.x_train.shape == (400, 32, 32, 3) and first.x_train.dtype == np.uint8
    assert np.bincount(first.y_train, minlength=10).min() >= 30
    other = datasets.make_cifar10_standin(train_size=400, test_size=100, seed=6)
    assert not np.array_equal(first.x_train, other.x_train)


def test_standin_colour_families_match_in_grayscale_but_not_in_colour():
    """Warm and cool versions of a shape: same luma statistics, different hue."""
    data = datasets.make_cifar10_standin(train_size=2000, test_size=10, seed=0)
    images = data.x_train.astype(np.float64) / 255
    luma = images @ np.array([0.3, 0.59, 0.11])
    warm, cool = data.y_train % 2 == 0, data.y_train % 2 == 1
    assert abs(luma[warm].mean() - luma[cool].mean()) < 0.02
    red_minus_blue = images[..., 0] - images[..., 2]
    assert red_minus_blue[warm].mean() - red_minus_blue[cool].mean() > 0.05


def test_subset_is_stratified_and_proportional():
    data = datasets.make_cifar10_standin(train_size=1000, test_size=200, seed=0)
    small = data.subset(100, seed=1)
    assert len(small.x_train) == 100 and len(small.x_test) == 20
    assert np.bincount(small.y_train, minlength=10).min() >= 9
    assert small.describe()["limit"] == 100
    assert data.subset(None) is data and data.subset(5000) is data


def test_stratified_sample_exact_size_and_sorted():
    labels = np.repeat(np.arange(3), [50, 30, 20])
    chosen = datasets.stratified_sample(labels, 10, seed=0)
    assert len(chosen) == 10 and np.all(np.diff(chosen) > 0)
    assert np.bincount(labels[chosen]).tolist() == [5, 3, 2]


def test_rows_and_images_are_inverse():
    rows = np.random.default_rng(0).integers(0, 256, (4, 3072), dtype=np.uint8)
    images = datasets.rows_to_images(rows)
    assert images.shape == (4, 32, 32, 3)
    assert images[1, 0, 0, 1] == rows[1, 1024]  # green plane starts at 1024
    np.testing.assert_array_equal(datasets.images_to_rows(images), rows)


def test_corrupt_batch_file_is_named(tmp_path):
    (tmp_path / "data_batch_1").write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="data_batch_1 is not a CIFAR-10 python batch"):
        datasets.read_cifar10_batch(tmp_path / "data_batch_1")


# ---------------------------------------------------------------------------
# Where --data-dir points, and whose file a bad one is


@pytest.mark.parametrize("loader", ["mnist", "fashion_mnist", "cifar10"])
def test_data_dir_that_is_a_file_says_it_must_be_a_folder(tmp_path, loader):
    notes = tmp_path / "notes.txt"
    notes.write_text("my own notes\n")
    with pytest.raises(UserError) as raised:
        if loader == "cifar10":
            datasets.load_cifar10(data_dir=notes)
        else:
            datasets.load_mnist(data_dir=notes, dataset=loader)
    message = str(raised.value)
    assert "is a file, not a folder" in message and "must be the folder" in message
    assert ("cifar-10-python.tar.gz" if loader == "cifar10" else "train-images-idx3-ubyte.gz") in message
    assert "delete" not in message.lower()
    assert notes.read_text() == "my own notes\n"


def test_data_dir_may_be_the_archive_itself(tmp_path):
    write_cifar_archive(tmp_path / "cifar-10-python.tar.gz", np.random.default_rng(20))
    assert len(datasets.load_cifar10(data="real", data_dir=tmp_path / "cifar-10-python.tar.gz").x_train) == 100


def test_a_bad_file_of_the_users_is_never_to_be_deleted(tmp_path):
    write_cifar_archive(tmp_path / "cifar-10-python.tar.gz", np.random.default_rng(21), truncate_to=0.6)
    with pytest.raises(UserError) as raised:
        datasets.load_cifar10(data="real", data_dir=tmp_path)
    message = str(raised.value)
    assert "truncated or corrupt" in message and "delete" not in message.lower()
    assert "Replace" in message and "c58f30108f718f92721af3b95e74349a" in message
    (tmp_path / "mnist.npz").write_bytes(b"not an npz")
    with pytest.raises(UserError) as raised:
        datasets.load_mnist(data="real", data_dir=tmp_path)
    assert "not a readable MNIST .npz" in str(raised.value) and "delete" not in str(raised.value).lower()


def test_a_bad_file_this_course_wrote_may_be_deleted(empty_keras_home):
    cached = empty_keras_home / "datasets" / "mnist.npz"
    cached.parent.mkdir()
    cached.write_bytes(b"cut short")
    with pytest.raises(UserError) as raised:  # put there by someone else: left alone
        datasets.load_mnist(data="real")
    assert "delete" not in str(raised.value).lower()
    datasets.register(cached)  # as the download does
    with pytest.raises(UserError, match=r"written by this course: delete it"):
        datasets.load_mnist(data="real")


def test_lab_data_dir_is_honoured(tmp_path, monkeypatch):
    write_idx_folder(tmp_path / "fashion-mnist", small_mnist(np.random.default_rng(22)))
    monkeypatch.setenv("LAB_DATA_DIR", str(tmp_path))
    data = datasets.load_mnist(data="real", dataset="fashion_mnist")
    assert str(tmp_path / "fashion-mnist") in data.source
    with pytest.raises(UserError, match=r"LAB_DATA_DIR=.* holds no mnist files"):
        datasets.load_mnist(data="real")
    monkeypatch.setenv("LAB_DATA_DIR", str(tmp_path / "absent"))
    with pytest.raises(UserError, match="LAB_DATA_DIR=.*absent does not exist"):
        datasets.load_cifar10()


def cache_lines(output):
    """The lines that announce a write into the cache."""
    return [line for line in output.splitlines() if line.startswith("cached ")]


def assert_announced(line, what, path):
    size = datasets.cache.human_size(datasets.cache._size(path))
    assert line == (f"cached {what} in {path} ({size}); later runs reuse it "
                    "(python -m common.datasets cache lists and cleans the cache)")


def test_first_run_on_an_image_folder_says_it_decodes_once_and_announces_each_cache_write(
        tmp_path, empty_keras_home, capsys):
    for split in ("train", "test"):
        for name in ("cat", "dog"):
            (tmp_path / split / name).mkdir(parents=True)
            for index in range(6 if split == "train" else 3):
                Image.new("RGB", (32, 32), (10, 20, 30 * index)).save(tmp_path / split / name / f"{index}.jpg")
    datasets.load_cifar10(data="real", data_dir=tmp_path)
    output = capsys.readouterr().out
    cached = next((empty_keras_home / "datasets").glob("cifar10-from-images-*.npz"))
    assert f"decoding the 18 image files in {tmp_path}, once" in output
    [line] = cache_lines(output)
    assert_announced(line, f"the decoded images of {tmp_path}", cached)
    datasets.load_cifar10(data="real", data_dir=tmp_path)
    assert "decoding" not in (output := capsys.readouterr().out) and not cache_lines(output)
    # lab03's and lab04's batch files: the whole folder, and a --limit subset, each announced once.
    batches = datasets.cifar10_batches(data="real", data_dir=tmp_path)
    [line] = cache_lines(capsys.readouterr().out)
    assert_announced(line, f"the images of {tmp_path} as batch files", batches.path)
    limited = datasets.cifar10_batches(data="real", data_dir=tmp_path, limit=6)
    [line] = cache_lines(capsys.readouterr().out)
    assert_announced(line, "the --limit 6 subset (seed 0) of CIFAR-10 as batch files", limited.path)
    datasets.cifar10_batches(data="real", data_dir=tmp_path)
    datasets.cifar10_batches(data="real", data_dir=tmp_path, limit=6)
    assert not cache_lines(capsys.readouterr().out)


def test_the_standin_as_batch_files_is_announced_once(empty_keras_home, capsys):
    for limit, what in ((None, "the CIFAR-10 stand-in (seed 0)"),
                        (100, "the --limit 100 subset (seed 0) of the CIFAR-10 stand-in")):
        folder = datasets.cifar10_batches(data="standin", limit=limit).path
        [line] = cache_lines(capsys.readouterr().out)
        assert_announced(line, f"{what} as batch files", folder)
        datasets.cifar10_batches(data="standin", limit=limit)
        assert not cache_lines(capsys.readouterr().out)
