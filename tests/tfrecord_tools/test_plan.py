"""Splitting and sharding: stratified shares, spread over shards, and what is reported about them."""

import json
import os

import pytest

from tfrecord_tools.__main__ import main

from fakes import by_filename, image_bytes, make_class_folder, make_split_folder, write_file, write_records


def test_stratified_split_and_even_spread_over_shards(tmp_path):
    source = make_class_folder(tmp_path / "src", classes=("a", "b", "c"), per_class=20, size=(8, 8))
    summary = write_records(source, tmp_path / "out", test_fraction=0.25, num_shards=4, seed=3)
    assert summary["splits"]["train"]["class_counts"] == {"a": 15, "b": 15, "c": 15}
    assert summary["splits"]["test"]["class_counts"] == {"a": 5, "b": 5, "c": 5}
    for split in ("train", "test"):
        shards = summary["splits"][split]["shards"]
        assert len(shards) == 4
        for name in ("a", "b", "c"):
            counts = [shard["class_counts"].get(name, 0) for shard in shards]
            assert max(counts) - min(counts) <= 1
    files = by_filename(tmp_path / "out")
    assert len(files) == 60
    labels = {name: summary["label_to_index"][name.split("/")[0]] for name in files}
    assert all(files[name]["image/class/label"] == [label] for name, label in labels.items())


def test_default_shards_do_not_depend_on_workers(tmp_path):
    source = make_class_folder(tmp_path / "src", per_class=8, size=(8, 8))
    one = write_records(source, tmp_path / "one", workers=1)
    two = write_records(source, tmp_path / "two", workers=2)
    assert one["totals"]["shards"] == two["totals"]["shards"] == 8  # 4 per split
    names = sorted(os.listdir(tmp_path / "one"))
    assert names == sorted(os.listdir(tmp_path / "two"))
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    again = write_records(source, tmp_path / "one", workers=2)  # another --workers: reused, not refused
    assert again["shards_reused"] == 8 and again["shards_written"] == 0
    small = make_class_folder(tmp_path / "small", classes=("a",), per_class=3)
    assert write_records(small, tmp_path / "small_out", test_fraction=0)["totals"]["shards"] == 3  # one per image


def test_existing_split_folders_are_kept(tmp_path):
    make_class_folder(tmp_path / "src" / "train", per_class=4)
    make_class_folder(tmp_path / "src" / "test", per_class=2)
    summary = write_records(tmp_path / "src", tmp_path / "out")
    assert summary["layout"] == "splits" and summary["test_fraction"] is None
    assert summary["splits"]["train"]["images"] == 12 and summary["splits"]["test"]["images"] == 6


def test_test_share_follows_the_fraction_with_many_small_classes(tmp_path):
    source = make_class_folder(tmp_path / "src", classes=[f"c{index:02d}" for index in range(30)], per_class=3,
                               size=(8, 8))
    write_file(source / "tiny" / "only.jpg", image_bytes(seed=999))
    summary = write_records(source, tmp_path / "out", test_fraction=0.2)
    assert summary["splits"]["test"]["images"] == round(91 * 0.2)  # not one per class: 30 (33%)
    assert summary["splits"]["test"]["class_counts"]["tiny"] == 0
    assert any("13 class(es) have no test image" in warning for warning in summary["warnings"])


def test_fractions_on_an_already_split_source_are_reported(tmp_path):
    source = make_split_folder(tmp_path / "src")
    assert write_records(source, tmp_path / "quiet")["warnings"] == []
    summary = write_records(source, tmp_path / "out", test_fraction=0.3)
    assert any("fractions are ignored" in warning for warning in summary["warnings"])


def test_validation_split_at_write_time(tmp_path):
    source = make_class_folder(tmp_path / "src", per_class=10, size=(8, 8))
    summary = write_records(source, tmp_path / "out", test_fraction=0.2, val_fraction=0.2)
    assert {name: split["images"] for name, split in summary["splits"].items()} == {
        "test": 6, "train": 18, "validation": 6}
    assert all(count == 2 for count in summary["splits"]["validation"]["class_counts"].values())
    with pytest.raises(ValueError, match="below 1"):
        write_records(source, tmp_path / "bad", test_fraction=0.5, val_fraction=0.5)


def test_a_split_source_with_classes_missing_from_a_split_is_warned_about(tmp_path, capsys):
    source = tmp_path / "src"
    for index, (split, name) in enumerate([("train", "a"), ("train", "b"), ("test", "a"), ("test", "c")]):
        write_file(source / split / name / "0.jpg", image_bytes(seed=index))
    assert main(["write", str(source), str(tmp_path / "out"), "--workers", "1", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    expected = ["the train split has no image of 1 class(es) that test has: c",
                "the test split has no image of 1 class(es) that train has: b"]
    for message in expected:
        assert f"warning: {message}" in printed
    assert set(expected) <= set(json.loads((tmp_path / "out" / "dataset.json").read_text())["warnings"])


def test_a_split_source_without_test_folder_says_there_is_no_test_split(tmp_path):
    source = tmp_path / "src"
    for index, name in enumerate(["a", "b"]):
        write_file(source / "train" / name / "0.jpg", image_bytes(seed=index))
    summary = write_records(source, tmp_path / "out")
    assert "test" not in summary["splits"]
    assert any("has no test/ folder" in warning and "no test split" in warning for warning in summary["warnings"])

