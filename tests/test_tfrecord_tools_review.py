"""Tests of tfrecord_tools against the review's findings: one test per bug (B1-B10), then the usability points.

Each bug test fails on the version before its fix. Everything runs in-process on
a few tiny generated images, except where a real process is the point (SIGTERM).
"""

import errno
import io
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_tfrecord_tools import image_bytes, make_class_folder, read_records, rejected_lines, write, write_file

import tfrecord_tools
from tfrecord_tools import _pool, encode, info, scan, sidecar
from tfrecord_tools import write as write_module
from tfrecord_tools.__main__ import main

REPO_ROOT = Path(__file__).resolve().parents[1]


def photo_bytes(size=(256, 192), seed=0, quality=90):
    """A smooth, photo-like JPEG (its entropy data is long enough to damage in the middle)."""
    rng = np.random.default_rng(seed)
    width, height = size
    coarse = rng.integers(0, 256, (height // 16 + 2, width // 16 + 2, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((width, height), Image.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def pillow_decodes(data):
    try:
        Image.open(io.BytesIO(data)).load()
        return True
    except Exception:
        return False


def make_split_folder(root, splits=("train", "test"), classes=("cat", "dog"), per_class=3):
    for split_index, split in enumerate(splits):
        for class_index, name in enumerate(classes):
            for index in range(per_class):
                write_file(root / split / name / f"{index}.jpg",
                           image_bytes(seed=1000 * split_index + 100 * class_index + index))
    return root


# ---------------------------------------------------------------------------
# B1-B10


def test_b1_rerun_after_a_split_moved_away_keeps_the_finished_split(tmp_path):
    source = make_split_folder(tmp_path / "src")
    out = tmp_path / "out"
    write(source, out)
    test_shards = sorted(path.name for path in out.glob("test.tfrecord-*"))
    assert test_shards
    shutil.move(source / "test", tmp_path / "test_elsewhere")
    with pytest.raises(tfrecord_tools.OutputFolderError, match="not in the new plan"):
        write(source, out)
    assert sorted(path.name for path in out.glob("test.tfrecord-*")) == test_shards
    assert "test" in json.loads((out / "dataset.json").read_text())["splits"]
    assert tfrecord_tools.verify(out).ok
    replaced = write(source, out, overwrite=True)  # asked for: now the split goes
    assert list(replaced["splits"]) == ["train"] and not list(out.glob("test.tfrecord-*"))


def test_b2_crash_before_the_first_progress_line_is_finished_by_the_rerun(tmp_path, monkeypatch):
    source = make_class_folder(tmp_path / "src")
    out = tmp_path / "out"
    real_append = write_module._append_progress

    def disk_full(out_folder, result):
        raise OSError(errno.ENOSPC, "No space left on device", os.path.join(out_folder, "progress"))

    monkeypatch.setattr(write_module, "_append_progress", disk_full)
    with pytest.raises(OSError):
        write(source, out, num_shards=2, test_fraction=0)
    assert list(out.glob("train.tfrecord-*"))  # the first shard was renamed into place
    monkeypatch.setattr(write_module, "_append_progress", real_append)
    summary = write(source, out, num_shards=2, test_fraction=0)
    assert summary["totals"]["images"] == 15 and tfrecord_tools.verify(out).ok


def test_b4_strict_check_rejects_jpegs_with_destroyed_pixels(tmp_path):
    photo = photo_bytes()
    cut = photo[: len(photo) * 6 // 10] + b"\xff\xd9"  # cut at 60%, end marker appended
    middle = len(photo) // 2
    zeroed = photo[:middle] + b"\x00" * 4096 + photo[middle + 4096 :]
    if len(zeroed) != len(photo):
        pytest.skip("photo too small for a 4 KiB run")
    assert pillow_decodes(cut) and pillow_decodes(zeroed)  # what let them through before
    source = tmp_path / "src"
    write_file(source / "a" / "good.jpg", photo)
    write_file(source / "a" / "cut.jpg", cut)
    write_file(source / "a" / "zeroed.jpg", zeroed)
    write(source, tmp_path / "out", test_fraction=0)
    rejected = rejected_lines(tmp_path / "out")
    assert rejected["a/cut.jpg"]["category"] == rejected["a/zeroed.jpg"]["category"] == "corrupt"
    assert "libjpeg says" in rejected["a/cut.jpg"]["reason"]
    assert "a/good.jpg" not in rejected


def test_b4_png_chunk_crc_is_checked():
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, format="PNG")
    damaged = bytearray(buffer.getvalue())
    damaged[damaged.index(b"IDAT") + 4 + 2] ^= 1  # a flip that zlib and Pillow do not notice
    assert pillow_decodes(bytes(damaged))
    with pytest.raises(encode.ImageCheckError, match="CRC of its IDAT chunk"):
        encode.check_image(bytes(damaged))


def test_b5_a_large_non_image_file_is_not_read_whole(tmp_path):
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


def test_b6_contact_sheet_is_sized_from_the_data(tmp_path, monkeypatch):
    source = make_class_folder(tmp_path / "src")  # 5 images per class
    out = tmp_path / "out"
    write(source, out, test_fraction=0)
    path = info.contact_sheet(out, tmp_path / "sheet.png", per_class=1000)
    assert Image.open(path).size == (160 + 5 * 96, 3 * 96)
    monkeypatch.setattr(info, "MAX_SHEET_PIXELS", 10_000)
    with pytest.raises(tfrecord_tools.TFRecordToolsError, match="--max-classes"):
        info.contact_sheet(out, tmp_path / "big.png")
    assert not (tmp_path / "big.png").exists()


def damage_image_size(content):
    content["splits"]["train"]["image_size"].update(max_height=64, min_height=64)


def damage_count(content):
    content["splits"]["train"]["images"] = 999


@pytest.mark.parametrize("damage", [damage_image_size, damage_count], ids=["image size", "split count"])
def test_b8_verify_catches_a_sidecar_that_load_cannot_use(tmp_path, damage):
    source = make_class_folder(tmp_path / "src")
    out = tmp_path / "out"
    write(source, out, test_fraction=0)
    content = json.loads((out / "dataset.json").read_text())
    damage(content)
    (out / "dataset.json").write_text(json.dumps(content))
    report = tfrecord_tools.verify(out, raise_on_error=False)
    assert not report.ok and any(problem.shard == "train" for problem in report.problems), report.format()


STRUCTURAL_DAMAGE = {
    "shard without bytes": lambda content: content["splits"]["train"]["shards"][0].pop("bytes"),
    "shard without sha256": lambda content: content["splits"]["train"]["shards"][0].pop("sha256"),
    "split without class_counts": lambda content: content["splits"]["train"].pop("class_counts"),
    "splits as a list": lambda content: content.update(splits=list(content["splits"].values())),
    "null split": lambda content: content["splits"].update(train=None),
    "null shard": lambda content: content["splits"]["train"]["shards"].__setitem__(0, None),
    "null classes": lambda content: content.update(classes=None),
}


@pytest.mark.parametrize("damage", list(STRUCTURAL_DAMAGE.values()), ids=list(STRUCTURAL_DAMAGE))
def test_b8_damaged_sidecar_is_one_clear_error_in_verify_and_info(tmp_path, damage, capsys):
    source = make_class_folder(tmp_path / "src", per_class=2)
    out = tmp_path / "out"
    write(source, out, test_fraction=0)
    content = json.loads((out / "dataset.json").read_text())
    damage(content)
    (out / "dataset.json").write_text(json.dumps(content))
    for command in ("verify", "info"):
        assert main([command, str(out), "--workers", "1"] if command == "verify" else [command, str(out)]) == 1
        error = capsys.readouterr().err
        assert "dataset.json is damaged" in error and "Traceback" not in error


def test_b8_rejected_list_that_is_not_utf8_is_a_problem_not_a_crash(tmp_path):
    source = make_class_folder(tmp_path / "src", per_class=2)
    out = tmp_path / "out"
    write(source, out, test_fraction=0)
    (out / "rejected.jsonl").write_bytes(b"\xff\xfe not utf-8\n")
    report = tfrecord_tools.verify(out, raise_on_error=False)
    assert [problem.shard for problem in report.problems] == ["rejected.jsonl"]
    assert "UTF-8" in report.problems[0].message


def test_b9_shard_names_with_six_digits_are_ours():
    name = sidecar.shard_file_name("train", 5, 100_000)
    assert name == "train.tfrecord-00005-of-100000"
    assert sidecar.parse_shard_name(name) == ("train", 5, 100_000)
    assert sidecar.is_our_file(name) and sidecar.is_our_file(sidecar.shard_file_name("test", 123_456, 1_000_000))
    for index, count in ((0, 1), (99_998, 99_999), (99_999, 100_000), (100_000, 100_001)):
        assert sidecar.parse_shard_name(sidecar.shard_file_name("val", index, count)) == ("val", index, count)
    # Shaped like a shard but not one we would write: no file of ours, but still a shard for verify.
    stray = "train.tfrecord-000001-of-100000"
    assert sidecar.parse_shard_name(stray) is None and sidecar.SHARD_NAME_PATTERN.match(stray)
    assert sidecar.parse_shard_name("train.tfrecord-00003-of-00002") is None


def test_b9_verify_finds_a_stray_six_digit_shard(tmp_path):
    source = make_class_folder(tmp_path / "src", per_class=2)
    out = tmp_path / "out"
    write(source, out, test_fraction=0)
    (out / "train.tfrecord-00000-of-100000").write_bytes(b"")
    report = tfrecord_tools.verify(out, raise_on_error=False)
    assert [problem.shard for problem in report.problems] == ["train.tfrecord-00000-of-100000"]


@pytest.mark.parametrize("size", ["inf", "1e400", "-inf", "nan"])
def test_b10_shard_size_overflow_is_a_usage_error(tmp_path, size, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["write", str(tmp_path / "src"), str(tmp_path / "out"), "--shard-size", size])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert "--shard-size" in error and "Traceback" not in error


def test_b10_a_folder_chain_1100_levels_deep(tmp_path):
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


# ---------------------------------------------------------------------------
# Splits, labels and shares


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


def test_the_same_image_under_two_classes_is_named(tmp_path):
    source = make_class_folder(tmp_path / "src")
    shutil.copy(source / "cat" / "000.jpg", source / "dog" / "copy_of_a_cat.jpg")
    summary = write(source, tmp_path / "out", test_fraction=0)
    conflicts = summary["duplicates"]["conflicting_labels"]
    assert summary["duplicates"]["conflicting_labels_count"] == 1
    assert conflicts[0]["files"] == ["train:cat/000.jpg", "train:dog/copy_of_a_cat.jpg"]
    assert "train:dog/copy_of_a_cat.jpg" in tfrecord_tools.format_summary(summary)


def test_test_share_follows_the_fraction_with_many_small_classes(tmp_path):
    source = make_class_folder(tmp_path / "src", classes=[f"c{index:02d}" for index in range(30)], per_class=3,
                               size=(8, 8))
    write_file(source / "tiny" / "only.jpg", image_bytes(seed=999))
    summary = write(source, tmp_path / "out", test_fraction=0.2)
    assert summary["splits"]["test"]["images"] == round(91 * 0.2)  # not one per class: 30 (33%)
    assert summary["splits"]["test"]["class_counts"]["tiny"] == 0
    assert any("13 class(es) have no test image" in warning for warning in summary["warnings"])


def test_fractions_on_an_already_split_source_are_reported(tmp_path):
    source = make_split_folder(tmp_path / "src")
    assert write(source, tmp_path / "quiet")["warnings"] == []
    summary = write(source, tmp_path / "out", test_fraction=0.3)
    assert any("fractions are ignored" in warning for warning in summary["warnings"])


def test_validation_split_at_write_time(tmp_path):
    source = make_class_folder(tmp_path / "src", per_class=10, size=(8, 8))
    summary = write(source, tmp_path / "out", test_fraction=0.2, val_fraction=0.2)
    assert {name: split["images"] for name, split in summary["splits"].items()} == {
        "test": 6, "train": 18, "validation": 6}
    assert all(count == 2 for count in summary["splits"]["validation"]["class_counts"].values())
    with pytest.raises(ValueError, match="below 1"):
        write(source, tmp_path / "bad", test_fraction=0.5, val_fraction=0.5)


def test_look_alike_class_names_are_warned_about(tmp_path):
    source = make_class_folder(tmp_path / "src", classes=("cat", "cat ", "dog\u200b", "ｄｏｇ"), per_class=2)
    summary = write(source, tmp_path / "out", test_fraction=0)
    text = " ".join(summary["warnings"])
    assert "'cat '" in text and "'dog\\u200b'" in text and "look alike" in text
    assert "\\uff44" in text  # fullwidth d


# ---------------------------------------------------------------------------
# Images: memory, frames, previews, orientation, resizing


def test_16_bit_conversion_memory_is_bounded():
    pixels = np.random.default_rng(0).integers(0, 65536, (1000, 2000), dtype=np.uint16)
    image = Image.fromarray(pixels)
    assert image.mode.startswith("I;16")
    tracemalloc.start()
    try:
        converted = encode._to_8_bit_rgb(image)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert converted.mode == "RGB" and converted.size == (2000, 1000)
    assert peak < 10 * pixels.size, f"peak {peak / pixels.size:.1f} bytes per pixel"  # float64 needed >= 16


def test_animated_files_are_reported_and_previews_refused(source_with_oddities):
    summary, rejected = source_with_oddities
    assert summary["totals"]["multi_frame"] == 1 and summary["multi_frame_files"] == ["a/animated.gif"]
    assert "only the first is stored" in tfrecord_tools.format_summary(summary)
    assert rejected["a/preview.tif"]["category"] == "preview_only"


@pytest.fixture
def source_with_oddities(tmp_path):
    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)) for _ in range(2)]
    source = make_class_folder(tmp_path / "src", classes=("a",), per_class=2)
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    write_file(source / "a" / "animated.gif", buffer.getvalue())
    buffer = io.BytesIO()
    frames[0].save(buffer, format="TIFF", tiffinfo={254: 1})  # NewSubfileType: reduced-resolution image
    write_file(source / "a" / "preview.tif", buffer.getvalue())
    summary = write(source, tmp_path / "out", test_fraction=0)
    return summary, rejected_lines(tmp_path / "out")


def rotated_jpeg(size=(16, 12), orientation=6):
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    pixels = np.random.default_rng(3).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="JPEG", exif=exif.tobytes())
    return buffer.getvalue()


def test_exif_orientation_is_applied_only_when_asked(tmp_path):
    source = tmp_path / "src"
    write_file(source / "a" / "turned.jpg", rotated_jpeg())
    write(source, tmp_path / "as_is", test_fraction=0)
    write(source, tmp_path / "upright", test_fraction=0, apply_orientation=True)
    (as_is,) = read_records(next((tmp_path / "as_is").glob("train.tfrecord-*")))
    (upright,) = read_records(next((tmp_path / "upright").glob("train.tfrecord-*")))
    assert (as_is["image/height"], as_is["image/width"], as_is["image/reencoded"]) == ([12], [16], [0])
    assert (upright["image/height"], upright["image/width"], upright["image/reencoded"]) == ([16], [12], [1])
    assert Image.open(io.BytesIO(upright["image/encoded"][0])).size == (12, 16)
    assert json.loads((tmp_path / "upright" / "dataset.json").read_text())["exif_orientation_applied"] is True


def test_max_side_resizes_at_write_time(tmp_path):
    source = tmp_path / "src"
    write_file(source / "a" / "wide.jpg", photo_bytes(size=(400, 100), seed=1))
    write_file(source / "a" / "tall.png", image_bytes("PNG", size=(30, 90), seed=2))
    write_file(source / "a" / "small.jpg", image_bytes(size=(40, 30), seed=3))
    out = tmp_path / "out"
    summary = write(source, out, test_fraction=0, max_side=64, jpeg_quality=85, num_shards=1)
    records = {record["image/filename"][0].decode(): record for record in
               read_records(next(out.glob("train.tfrecord-*")))}
    sizes = {name: (record["image/width"][0], record["image/height"][0]) for name, record in records.items()}
    assert sizes == {"a/wide.jpg": (64, 16), "a/tall.png": (21, 64), "a/small.jpg": (40, 30)}
    for name, record in records.items():
        assert Image.open(io.BytesIO(record["image/encoded"][0])).size == sizes[name]
    assert records["a/small.jpg"]["image/reencoded"] == [0]  # small enough: stored byte for byte
    resize = json.loads((out / "dataset.json").read_text())["resize"]
    assert resize["max_side"] == 64 and resize["jpeg_quality"] == 85 and "LANCZOS" in resize["filter"]
    assert resize["resized_images"] == 2 and summary["splits"]["train"]["image_size"]["max_width"] == 64
    assert tfrecord_tools.verify(out).ok
    with pytest.raises(tfrecord_tools.OutputFolderError):  # other settings: other shards
        write(source, out, test_fraction=0, max_side=32, num_shards=1)


# ---------------------------------------------------------------------------
# Messages, output folder, resources


def test_unwritable_output_folder_is_found_before_the_check(tmp_path, monkeypatch):
    source = make_class_folder(tmp_path / "src", per_class=1)
    real_open = open

    def refusing_open(path, *args, **kwargs):
        if "write-test" in os.fspath(path):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(write_module, "open", refusing_open, raising=False)
    monkeypatch.setattr(write_module, "scan_images", lambda *args, **kwargs: pytest.fail("checked first"))
    with pytest.raises(tfrecord_tools.OutputFolderError, match="cannot write into the output folder"):
        write(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # a failed write leaves no empty OUT


def test_failed_write_leaves_no_empty_out_and_lists_what_it_rejected(tmp_path):
    source = tmp_path / "src"
    (source / "empty_class").mkdir(parents=True)
    with pytest.raises(tfrecord_tools.SourceFolderError):
        write(source, tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()
    write_file(source / "a" / "notes.txt", b"not an image")
    with pytest.raises(tfrecord_tools.SourceFolderError, match="rejected.jsonl"):
        write(source, tmp_path / "all_rejected")
    assert rejected_lines(tmp_path / "all_rejected")["a/notes.txt"]["category"] == "not_an_image"


def test_verify_during_a_running_write_says_so(tmp_path):
    fcntl = pytest.importorskip("fcntl")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".tfrecord_tools-progress.jsonl").write_text("")
    descriptor = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)  # what a running write holds
        with pytest.raises(tfrecord_tools.SidecarError, match="running now"):
            tfrecord_tools.verify(out)
    finally:
        os.close(descriptor)
    with pytest.raises(tfrecord_tools.SidecarError, match="interrupted"):
        tfrecord_tools.verify(out)


def test_command_line_messages_name_flags(tmp_path, capsys):
    source = make_class_folder(tmp_path / "src", per_class=2)
    out = tmp_path / "out"
    assert main(["write", str(source), str(out), "--workers", "1", "--no-progress", "--test-fraction", "0"]) == 0
    capsys.readouterr()
    assert main(["write", str(source), str(out), "--workers", "1", "--no-progress", "--num-shards", "1"]) == 1
    error = capsys.readouterr().err
    assert "pass --overwrite" in error and "overwrite=True" not in error
    with pytest.raises(tfrecord_tools.OutputFolderError, match=r"overwrite=True"):
        write(source, out, num_shards=1)


def test_disk_full_names_the_file_and_the_rerun(tmp_path, monkeypatch, capsys):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "/data/out/train.tfrecord-00000-of-00004")

    monkeypatch.setattr(write_module, "write_dataset", full)
    assert main(["write", str(tmp_path), str(tmp_path / "out")]) == 1
    error = capsys.readouterr().err
    assert "train.tfrecord-00000-of-00004: No space left on device" in error
    assert "run the same command again" in error


def test_overwrite_never_deletes_a_foreign_dataset_json(tmp_path):
    source = make_class_folder(tmp_path / "src", per_class=1)
    out = tmp_path / "out"
    out.mkdir()
    (out / "dataset.json").write_text('{"mine": true}')
    with pytest.raises(tfrecord_tools.OutputFolderError, match="did not write"):
        write(source, out, overwrite=True)
    assert (out / "dataset.json").read_text() == '{"mine": true}'


def test_sidecar_does_not_depend_on_where_the_source_lies(tmp_path):
    make_class_folder(tmp_path / "one" / "photos", per_class=2)
    shutil.copytree(tmp_path / "one" / "photos", tmp_path / "two" / "deeper" / "photos")
    write(tmp_path / "one" / "photos", tmp_path / "out1")
    write(tmp_path / "two" / "deeper" / "photos", tmp_path / "out2")
    assert (tmp_path / "out1" / "dataset.json").read_bytes() == (tmp_path / "out2" / "dataset.json").read_bytes()


def test_contact_sheet_format_scaling_and_place(tmp_path):
    source = make_class_folder(tmp_path / "src", per_class=2, size=(32, 32))
    out = tmp_path / "out"
    write(source, out, test_fraction=0)
    path = info.contact_sheet(out, tmp_path / "sheet.jpg", thumbnail_px=96)
    sheet = Image.open(path)
    assert sheet.format == "JPEG"
    cell = np.asarray(sheet.convert("L"))[0:96, 160:256]
    assert (cell < 250).mean() > 0.9  # the 32 px image fills its 96 px cell
    with pytest.raises(tfrecord_tools.TFRecordToolsError, match="contact_sheet"):
        info.contact_sheet(out, out / "preview.png")
    info.contact_sheet(out, out / "contact_sheet_train.png")
    assert write(source, out, test_fraction=0)["shards_reused"] == 4  # the sheet does not block the write


def square(value):
    return value * value


def test_pool_starts_no_more_processes_than_tasks():
    with _pool.WorkerPool(8) as pool:
        assert list(pool.map(square, [2, 3], doing="testing")) == [4, 9]
        assert len(multiprocessing.active_children()) <= 2


def test_sigterm_stops_a_write_cleanly(tmp_path):
    source = make_class_folder(tmp_path / "src", per_class=40, size=(8, 8))
    command = [sys.executable, "-m", "tfrecord_tools", "write", str(source), str(tmp_path / "out"), "--workers", "2",
               "--no-progress"]
    environment = {**os.environ, "TFRECORD_TOOLS_TEST_RECORD_DELAY": "0.05", "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list((tmp_path / "out").glob(".incomplete-*.tfrecord-*")):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert "stopped by SIGTERM" in stderr and "leaked" not in stderr and "Traceback" not in stderr
    assert not list((tmp_path / "out").glob(".incomplete-*"))
    command[-1:] = ["--no-progress"]
    finished = subprocess.run(command, env={**environment, "TFRECORD_TOOLS_TEST_RECORD_DELAY": "0"},
                              capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0 and "120 images" in finished.stdout, finished.stderr


def test_unguarded_call_sites_are_recognised(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(
        "import sys, warnings\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from tfrecord_tools import _pool\n"
        "warnings.simplefilter('ignore')\n"
        "print('top', _pool.usable_workers(4))\n"
        "def run():\n"
        "    return _pool.usable_workers(4)\n"
        "print('function at top level', run())\n"
        "if __name__ == '__main__':\n"
        "    print('guarded', run())\n"
    )
    result = subprocess.run([sys.executable, str(script), str(REPO_ROOT)], capture_output=True, text=True,
                            timeout=60)
    assert result.stdout.splitlines() == ["top 1", "function at top level 1", "guarded 4"], result.stderr
