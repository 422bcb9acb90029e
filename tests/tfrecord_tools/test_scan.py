"""Decode-checking the files found under SRC: verdicts, labels, names, and what scan_images gives the assignment."""

import os
import random
import tracemalloc

import pytest

import tfrecord_tools
from tfrecord_tools import encode, scan
from tfrecord_tools.plan import seeded_random

from fakes import (
    all_records,
    by_filename,
    image_bytes,
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


