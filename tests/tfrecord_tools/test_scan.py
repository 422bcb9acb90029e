"""Walking SRC: class and split folders, links, hidden and odd files, names, and the decode check's verdicts."""

import os
import random
import tracemalloc
from pathlib import Path

import pytest

import tfrecord_tools
from tfrecord_tools import encode, scan
from tfrecord_tools.plan import seeded_random

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


def test_zero_byte_file_is_rejected(source, tmp_path):
    write_file(source / "dog" / "empty.jpg", b"")
    write_records(source, tmp_path / "out")
    assert rejected_lines(tmp_path / "out")["dog/empty.jpg"]["reason"] == "empty file (0 bytes)"


def test_text_file_named_jpg_is_rejected(source, tmp_path):
    write_file(source / "dog" / "notes.jpg", b"these are my notes about dogs\n")
    write_records(source, tmp_path / "out")
    item = rejected_lines(tmp_path / "out")["dog/notes.jpg"]
    assert item["category"] == "not_an_image" and "text" in item["reason"]


def test_names_with_spaces_and_non_ascii_characters(source, tmp_path):
    write_file(source / "dog" / "my dog Ødin 🐕.jpg", image_bytes(seed=21))
    write_file(source / "élan vital" / "über.jpg", image_bytes(seed=22))
    summary = write_records(source, tmp_path / "out")
    assert "élan vital" in summary["classes"]
    records = by_filename(tmp_path / "out")
    assert records["dog/my dog Ødin 🐕.jpg"]["image/class/text"] == [b"dog"]
    assert records["élan vital/über.jpg"]["image/class/text"] == ["élan vital".encode()]
    assert tfrecord_tools.verify(tmp_path / "out").ok


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


def test_stop_on_first_bad_file_names_it(source, tmp_path):
    write_file(source / "cat" / "broken.jpg", b"\xff\xd8\xff\xe0 not really")
    with pytest.raises(tfrecord_tools.BadImageError, match=r"cat/broken\.jpg"):
        write_records(source, tmp_path / "out", on_error="stop")
    assert not (tmp_path / "out" / "dataset.json").exists()


def test_stop_on_error_ignores_hidden_files(source, tmp_path):
    write_file(source / "cat" / ".DS_Store", b"\x00\x00\x00\x01Bud1")
    summary = write_records(source, tmp_path / "out", on_error="stop")
    assert summary["totals"]["images"] == 15
    assert rejected_lines(tmp_path / "out")["cat/.DS_Store"]["category"] == "hidden"
    write_file(source / "dog" / "broken.jpg", b"\xff\xd8\xff\xe0 not really")
    with pytest.raises(tfrecord_tools.BadImageError, match=r"dog/broken\.jpg"):
        write_records(source, tmp_path / "out2", on_error="stop")


def test_scan_images_alone_for_the_assignment(source):
    write_file(source / "dog" / "bad.jpg", b"nope")
    scan = tfrecord_tools.scan_images(source, workers=1)
    paths, labels = scan.paths_and_labels()
    assert len(paths) == 15 and sorted(set(labels)) == [0, 1, 2]
    assert [item.relative_path for item in scan.rejected] == ["dog/bad.jpg"]
    assert scan.class_counts() == {"cat": 5, "dog": 5, "fox": 5}


def test_class_folder_name_that_is_not_utf8(source, tmp_path):
    bad = os.path.join(os.fsencode(source), b"bad\xff")
    os.mkdir(bad)
    with open(os.path.join(bad, b"1.jpg"), "wb") as handle:
        handle.write(image_bytes(seed=50))
    with open(os.path.join(bad, b"2.jpg"), "wb") as handle:
        handle.write(image_bytes(seed=51))
    summary = write_records(source, tmp_path / "out")
    assert "bad\udcff" in summary["classes"] and summary["totals"]["images"] == 17
    assert {record["image/class/text"][0] for _, record in all_records(tmp_path / "out")} >= {b"bad\xff"}
    assert tfrecord_tools.verify(tmp_path / "out").ok
    # Seeds of valid names are unchanged, so earlier outputs stay byte-identical.
    assert seeded_random("0/split/élan").random() == random.Random("0/split/élan").random()


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


# B5
def test_a_large_non_image_file_is_not_read_whole(tmp_path):
    video = tmp_path / "src" / "a" / "clip.mp4"
    video.parent.mkdir(parents=True)
    with open(video, "wb") as handle:
        handle.write(b"\x00\x00\x00\x18ftypmp42")
        handle.truncate(64 * 1024 * 1024)  # sparse: 64 MiB that take no disk
    tracemalloc.start()
    try:
        results = scan._check_chunk(([(str(video), "a/clip.mp4")], {"max_pixels": encode.DEFAULT_MAX_PIXELS}))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert results[0][3] == "not_an_image"
    assert peak < 1024 * 1024, f"peak {peak:,} bytes"


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

