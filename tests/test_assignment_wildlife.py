"""common.wildlife: labels from the class folder, exact duplicates, an already-split folder, the link tree."""

import numpy as np
import pytest
from PIL import Image

from common import wildlife
from common.errors import UserError


def write_photos(folder, names, seed):
    """Small random-noise JPEGs (distinct bytes) at ``folder/<name>``."""
    rng = np.random.default_rng(seed)
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8)).save(path, quality=90)


def test_labels_come_from_the_class_folder_and_duplicates_are_dropped(tmp_path, capsys):
    """A photo in deer/extra/ is a deer (not a class 'extra'); an exact copy never lands in both halves."""
    data = tmp_path / "wildlife"
    for number, class_name in enumerate(("cougar", "deer", "raven")):
        write_photos(data / class_name, [f"{index}.jpg" for index in range(6)], seed=number)
    write_photos(data / "deer" / "extra", ["a.jpg", "b.jpg"], seed=9)
    (data / "raven" / "zz_copy.jpg").write_bytes((data / "cougar" / "0.jpg").read_bytes())
    (data / "raven" / "notes.jpg").write_text("not a photo")
    split = wildlife.load("real", data, workers=1)
    assert "total img num: 21" in capsys.readouterr().out
    assert split.class_names == ["cougar", "deer", "raven"] and not split.is_standin
    assert split.duplicates == [{"path": "raven/zz_copy.jpg", "same_as": "cougar/0.jpg"}]
    assert [item["path"] for item in split.rejected] == ["raven/notes.jpg"]
    paths = split.train_paths + split.test_paths
    assert len(paths) == len(set(paths)) == 3 * 6 + 2
    for path, label in zip(paths, split.train_labels + split.test_labels, strict=True):
        assert split.relative_paths[path].split("/")[0] == split.class_names[label]
    assert len(split.test_paths) == 4  # 20%, stratified
    links = wildlife.link_split(split, tmp_path / "links")
    assert sorted(path.name for path in (links / "train" / "deer" / "extra").iterdir()) in (["a.jpg"], ["b.jpg"],
                                                                                           ["a.jpg", "b.jpg"])
    linked = sorted(str(path.resolve()) for path in links.rglob("*.jpg"))
    assert linked == sorted(str(path) for path in map(lambda p: __import__("pathlib").Path(p).resolve(), paths))
    csv_path = wildlife.write_csv(tmp_path / "train.csv", split.train_paths, split.train_labels)
    assert wildlife.read_csv(csv_path) == list(zip(split.train_paths, split.train_labels, strict=True))


def test_a_folder_already_split_keeps_its_split(tmp_path):
    data = tmp_path / "split"
    for number, class_name in enumerate(("cougar", "deer")):
        write_photos(data / "train" / class_name, [f"{index}.jpg" for index in range(8)], seed=number)
        write_photos(data / "test" / class_name, [f"{index}.jpg" for index in range(3)], seed=10 + number)
    split = wildlife.load("auto", data, workers=1)
    assert split.layout == "splits" and len(split.train_paths) == 16 and len(split.test_paths) == 6
    assert all("/train/" in path for path in split.train_paths) and all("/test/" in path for path in split.test_paths)
    links = wildlife.link_split(split, tmp_path / "links")
    assert len(list((links / "train" / "cougar").iterdir())) == 8  # the leading train/ is not doubled


def test_limit_is_stratified_and_bad_folders_are_refused(tmp_path):
    data = tmp_path / "wildlife"
    for number, class_name in enumerate(("a", "b")):
        write_photos(data / class_name, [f"{index}.jpg" for index in range(10)], seed=number)
    split = wildlife.load("real", data, limit=6, workers=1)
    assert len(split.train_paths) == 6 and sorted(split.train_labels) == [0, 0, 0, 1, 1, 1]
    with pytest.raises(UserError, match="--data real needs the Oregon Wildlife photos"):
        wildlife.load("real", tmp_path / "missing", workers=1)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        wildlife.load("auto", tmp_path / "file.txt", workers=1)
