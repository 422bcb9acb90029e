"""Finding the candidate files under SRC: class and split folders, links, hidden and odd files, names."""

import os
from pathlib import Path

import pytest

import tfrecord_tools

from fakes import (
    all_records,
    by_filename,
    image_bytes,
    make_class_folder,
    make_split_folder,
    rejected_lines,
    write_file,
    write_records,
)


def test_hidden_files_and_folders_are_skipped_and_listed(source, tmp_path):
    write_file(source / "cat" / ".DS_Store", b"\x00\x00\x00\x01Bud1")
    write_file(source / "cat" / ".hidden.jpg", image_bytes(seed=31))
    write_file(source / ".git" / "config", b"[core]")
    summary = write_records(source, tmp_path / "out")
    rejected = rejected_lines(tmp_path / "out")
    assert {rejected[path]["category"] for path in ("cat/.DS_Store", "cat/.hidden.jpg", ".git")} == {"hidden"}
    assert ".git" not in summary["classes"]


def test_empty_class_folder_keeps_its_label(source, tmp_path):
    (source / "bear").mkdir()
    summary = write_records(source, tmp_path / "out")
    assert summary["classes"] == ["bear", "cat", "dog", "fox"]
    assert summary["empty_classes"] == ["bear"]
    assert {record["image/class/label"][0] for _, record in all_records(tmp_path / "out")} == {1, 2, 3}
    assert "bear" in tfrecord_tools.format_summary(summary)


def test_folder_with_no_class_folders_is_refused(tmp_path):
    write_file(tmp_path / "flat" / "a.jpg", image_bytes())
    with pytest.raises(tfrecord_tools.SourceFolderError, match="no class folders"):
        write_records(tmp_path / "flat", tmp_path / "out")


def test_symlink_loop_is_reported_not_followed(source, tmp_path):
    os.symlink(source / "cat", source / "cat" / "again")  # cat/again -> cat
    os.symlink("self_link", source / "dog" / "self_link")  # points to itself
    os.symlink(tmp_path / "nowhere.jpg", source / "dog" / "broken.jpg")
    summary = write_records(source, tmp_path / "out")
    rejected = rejected_lines(tmp_path / "out")
    assert rejected["cat/again"]["category"] == "symlink_loop"
    assert rejected["dog/self_link"]["category"] == "symlink_loop"
    assert rejected["dog/broken.jpg"]["category"] == "broken_link"
    assert summary["totals"]["images"] == 15


def test_symlinks_back_into_source_do_not_relabel_images(source, tmp_path):
    os.symlink(".", source / "a_loop")  # SRC/a_loop -> SRC
    os.symlink("..", source / "cat" / "up")  # SRC/cat/up -> SRC: would label dog and fox images cat
    os.symlink("../dog", source / "cat" / "dogs")  # into another class folder
    os.symlink(source / "fox", source / "kitsune")  # a class folder twice, under two names
    outside = make_class_folder(tmp_path / "elsewhere", classes=("owl",), per_class=2)
    os.symlink(outside / "owl", source / "owl")  # a class folder that lives elsewhere is fine
    summary = write_records(source, tmp_path / "out")
    assert summary["classes"] == ["cat", "dog", "fox", "owl"] and summary["totals"]["images"] == 17
    for path, record in by_filename(tmp_path / "out").items():
        assert record["image/class/text"] == [path.split("/")[0].encode()], path
    rejected = rejected_lines(tmp_path / "out")
    for path in ("a_loop", "cat/up", "cat/dogs", "kitsune"):
        assert rejected[path]["category"] == "symlink_loop", rejected[path]
        assert "back into SRC" in rejected[path]["reason"], rejected[path]


def test_val_and_valid_name_the_validation_split(tmp_path):
    make_class_folder(tmp_path / "src" / "train", per_class=4)
    make_class_folder(tmp_path / "src" / "val", per_class=2)
    summary = write_records(tmp_path / "src", tmp_path / "out")
    assert summary["layout"] == "splits" and summary["classes"] == ["cat", "dog", "fox"]
    assert summary["splits"]["validation"]["images"] == 6 and summary["splits"]["train"]["images"] == 12
    make_class_folder(tmp_path / "src2" / "valid", per_class=1)
    make_class_folder(tmp_path / "src2" / "test", per_class=1)
    assert tfrecord_tools.scan_images(tmp_path / "src2", workers=1).images[-1].split == "validation"


@pytest.mark.parametrize(("names", "splits"), [
    (("Train", "Test"), {"train", "test"}),
    (("TRAIN", "VAL"), {"train", "validation"}),
    (("training_set", "test_set"), {"train", "test"}),
])
def test_split_folders_named_another_way(tmp_path, names, splits):
    source = make_split_folder(tmp_path / "src", splits=names)
    found = tfrecord_tools.scan_images(source, workers=1)
    assert found.layout == "splits" and found.class_names == ["cat", "dog"]  # not two classes "Train", "Test"
    assert {image.split for image in found.images} == splits


def test_split_folders_mixed_with_other_folders_are_refused(tmp_path):
    make_class_folder(tmp_path / "src" / "train", per_class=1)
    make_class_folder(tmp_path / "src", classes=("dog",), per_class=1)
    with pytest.raises(tfrecord_tools.SourceFolderError, match=r"mixes split folders \(train\) with other folders"):
        write_records(tmp_path / "src", tmp_path / "out")
    make_class_folder(tmp_path / "two" / "val", per_class=1)
    make_class_folder(tmp_path / "two" / "validation", per_class=1)
    with pytest.raises(tfrecord_tools.SourceFolderError, match="2 folders for the validation split"):
        tfrecord_tools.scan_images(tmp_path / "two", workers=1)


def test_class_names_in_two_unicode_forms_are_refused(tmp_path):
    source = make_class_folder(tmp_path / "src", classes=("caf\u00e9", "cafe\u0301"), per_class=1)
    with pytest.raises(tfrecord_tools.SourceFolderError, match="two Unicode forms") as caught:
        write_records(source, tmp_path / "out")
    assert r"'caf\xe9'" in str(caught.value) and r"'cafe\u0301'" in str(caught.value)


def test_look_alike_class_names_are_warned_about(tmp_path):
    source = make_class_folder(tmp_path / "src", classes=("cat", "cat ", "dog\u200b", "ｄｏｇ"), per_class=2)
    summary = write_records(source, tmp_path / "out", test_fraction=0)
    text = " ".join(summary["warnings"])
    assert "'cat '" in text and "'dog\\u200b'" in text and "look alike" in text
    assert "\\uff44" in text  # fullwidth d


# B10
def test_a_folder_chain_1100_levels_deep(tmp_path):
    source = tmp_path / "src"
    deep = source / "a"
    deep.mkdir(parents=True)
    for _ in range(1100):
        deep = deep / "d"
        os.mkdir(deep)
    (deep / "x.jpg").write_bytes(image_bytes())
    write_file(source / "a" / "y.jpg", image_bytes(seed=1))
    try:
        found = tfrecord_tools.scan_images(source, workers=1)
        assert sorted(Path(image.relative_path).name for image in found.images) == ["x.jpg", "y.jpg"]
    finally:  # shutil.rmtree (pytest's clean-up) recurses: remove the chain bottom-up here
        (deep / "x.jpg").unlink()
        while deep != source / "a":
            deep.rmdir()
            deep = deep.parent


# N12
def test_a_link_loop_or_a_broken_link_at_the_top_of_src_is_listed_not_fatal(source, tmp_path):
    os.symlink("self", source / "self")
    os.symlink("b", source / "a")
    os.symlink("a", source / "b")
    os.symlink(tmp_path / "nowhere", source / "gone")
    summary = write_records(source, tmp_path / "out")
    assert summary["totals"]["images"] == 15
    rejected = rejected_lines(tmp_path / "out")
    assert [rejected[name]["category"] for name in ("self", "a", "b", "gone")] == ["symlink_loop"] * 3 + [
        "broken_link"]
    assert rejected["gone"]["reason"] == f"broken symbolic link to {str(tmp_path / 'nowhere')!r}"


# N12
def test_a_source_without_class_folders_says_what_it_found(tmp_path):
    (tmp_path / "hidden_only" / ".git").mkdir(parents=True)
    with pytest.raises(tfrecord_tools.SourceFolderError) as caught:
        tfrecord_tools.scan_images(tmp_path / "hidden_only", workers=1)
    assert str(caught.value).endswith("found nothing usable: 1 hidden folder (.git) skipped")
    (tmp_path / "empty").mkdir()
    with pytest.raises(tfrecord_tools.SourceFolderError, match="; found nothing: the folder is empty$"):
        tfrecord_tools.scan_images(tmp_path / "empty", workers=1)
