"""common.datasets.wildlife: labels from the class folder, duplicates, an already-split folder, links, --limit."""

import numpy as np
import pytest
from PIL import Image

from common import datasets
from common.errors import UserError


def write_photos(folder, names, seed):
    """Small random-noise JPEGs (distinct bytes) at ``folder/<name>``."""
    rng = np.random.default_rng(seed)
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8)).save(path, quality=90)


def load(data, data_dir, limit=None):
    return datasets.load_wildlife(datasets.find_wildlife(data, data_dir), limit=limit, workers=1)


def test_labels_come_from_the_class_folder_and_duplicates_are_dropped(tmp_path, capsys):
    """A photo in deer/extra/ is a deer (not a class 'extra'); an exact copy never lands in both halves."""
    data = tmp_path / "wildlife"
    for number, class_name in enumerate(("cougar", "deer", "raven")):
        write_photos(data / class_name, [f"{index}.jpg" for index in range(6)], seed=number)
    write_photos(data / "deer" / "extra", ["a.jpg", "b.jpg"], seed=9)
    (data / "raven" / "zz_copy.jpg").write_bytes((data / "cougar" / "0.jpg").read_bytes())
    (data / "raven" / "notes.jpg").write_text("not a photo")
    split = load("real", data)
    assert "total img num: 21" in capsys.readouterr().out
    assert split.class_names == ["cougar", "deer", "raven"] and not split.is_standin
    assert split.duplicates == [{"path": "raven/zz_copy.jpg", "same_as": "cougar/0.jpg"}]
    assert [item["path"] for item in split.rejected] == ["raven/notes.jpg"]
    paths = split.train_paths + split.test_paths
    assert len(paths) == len(set(paths)) == 3 * 6 + 2
    for path, label in zip(paths, split.train_labels + split.test_labels, strict=True):
        assert split.relative_paths[path].split("/")[0] == split.class_names[label]
    assert len(split.test_paths) == 4  # 20%, stratified
    links = datasets.link_split(split, tmp_path / "links")
    assert sorted(path.name for path in (links / "train" / "deer" / "extra").iterdir()) in (["a.jpg"], ["b.jpg"],
                                                                                           ["a.jpg", "b.jpg"])
    linked = sorted(str(path.resolve()) for path in links.rglob("*.jpg"))
    assert linked == sorted(str(path) for path in map(lambda p: __import__("pathlib").Path(p).resolve(), paths))
    csv_path = datasets.write_csv(tmp_path / "train.csv", split.train_paths, split.train_labels)
    assert datasets.read_csv(csv_path) == list(zip(split.train_paths, split.train_labels, strict=True))


def test_a_folder_already_split_keeps_its_split(tmp_path):
    data = tmp_path / "split"
    for number, class_name in enumerate(("cougar", "deer")):
        write_photos(data / "train" / class_name, [f"{index}.jpg" for index in range(8)], seed=number)
        write_photos(data / "test" / class_name, [f"{index}.jpg" for index in range(3)], seed=10 + number)
    split = load("auto", data)
    assert split.layout == "splits" and len(split.train_paths) == 16 and len(split.test_paths) == 6
    assert all("/train/" in path for path in split.train_paths) and all("/test/" in path for path in split.test_paths)
    links = datasets.link_split(split, tmp_path / "links")
    assert len(list((links / "train" / "cougar").iterdir())) == 8  # the leading train/ is not doubled


def test_limit_is_stratified_and_bad_folders_are_refused(tmp_path):
    data = tmp_path / "wildlife"
    for number, class_name in enumerate(("a", "b")):
        write_photos(data / class_name, [f"{index}.jpg" for index in range(10)], seed=number)
    split = load("real", data, limit=6)
    assert len(split.train_paths) == 6 and sorted(split.train_labels) == [0, 0, 0, 1, 1, 1]
    assert sorted(split.test_labels) == [0, 1]  # round(6 * 4 / 16) = 2 test photos, one per class
    with pytest.raises(UserError, match="--data real needs the Oregon Wildlife photos"):
        datasets.find_wildlife("real", tmp_path / "missing")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        datasets.find_wildlife("auto", tmp_path / "file.txt")


def test_the_listing_gives_the_split_counts_that_check_limit_needs(tmp_path):
    """find_wildlife opens no file, and its counts let check_limit refuse a too-small --limit at once."""
    data = tmp_path / "wildlife"
    for number, (class_name, count) in enumerate((("a", 10), ("b", 20), ("c", 5))):
        write_photos(data / class_name, [f"{index}.jpg" for index in range(count)], seed=number)
    (data / "c" / "broken.jpg").write_text("not a photo")  # listed: only the decode check drops it
    photos = datasets.find_wildlife("auto", data)
    assert not photos.is_standin and photos.layout == "classes" and photos.class_names == ["a", "b", "c"]
    assert photos.train_counts == [8, 16, 5] and photos.test_counts == [2, 4, 1]
    counts = {"train_counts": photos.train_counts, "test_counts": photos.test_counts}
    # 14 training photos give round(14 * 7 / 29) = 3 test photos, all to a and b; 15 give 4, one to c.
    with pytest.raises(UserError, match=r"--limit 14 is too small for the photos in .*: it would leave a class "
                                        r"without a test image.*The smallest accepted is --limit 15"):
        datasets.check_limit(photos.name, 14, **counts)
    with pytest.raises(UserError, match=r"smaller than one global batch \(16 images\).*--limit 16"):
        datasets.check_limit(photos.name, 15, global_batch=16, **counts)
    assert datasets.check_limit(photos.name, 15, **counts) == 15
    # find_wildlife checks --limit itself when given one, before any photo is decoded.
    with pytest.raises(UserError, match=r"--limit 14 is too small"):
        datasets.find_wildlife("auto", data, limit=14)
    assert datasets.find_wildlife("auto", data, limit=15).train_counts == photos.train_counts


def test_the_stand_in_is_one_folder_whatever_the_limit(tmp_path, monkeypatch, capsys):
    """Generated once per seed; --limit takes its subset afterwards, so quick runs do not fill the cache."""
    monkeypatch.setattr(datasets.standins, "WILDLIFE_STANDIN_PER_CLASS", 6)
    photos = datasets.find_wildlife("standin", None)
    announced = [line for line in capsys.readouterr().out.splitlines() if line.startswith("cached ")]
    assert announced == [f"cached the Oregon Wildlife stand-in (seed 0, 60 generated photos and 2 broken files) in "
                         f"{photos.root} ({datasets.cache.human_size(datasets.cache._size(photos.root))}); later runs "
                         "reuse it (python -m common.datasets cache lists and cleans the cache)"]
    assert photos.is_standin and photos.name == "the Oregon Wildlife stand-in"
    assert photos.class_names == datasets.WILDLIFE_CLASSES
    assert photos.root.parent == datasets.cache_dir() and photos.root.name.startswith("oregon_wildlife_standin_")
    small = datasets.load_wildlife(photos, limit=40, workers=1)
    full = datasets.load_wildlife(datasets.find_wildlife("auto", None), workers=1)
    assert [entry["name"] for entry in datasets.cache_entries()] == [photos.root.name]
    assert "cached " not in capsys.readouterr().out  # written once, announced once
    assert len(small.train_paths) == 40 and sorted(set(small.train_labels)) == list(range(10))
    assert sorted(small.test_labels) == list(range(10))  # round(40 * 12 / 48) = 10 test photos
    assert set(small.train_paths) <= set(full.train_paths) and len(full.train_paths) == 48
    assert {"broken_truncated.jpg", "broken_not_an_image.jpg"} == {item["path"].split("/")[-1]
                                                                   for item in full.rejected}
