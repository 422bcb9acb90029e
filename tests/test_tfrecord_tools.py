"""Tests of tfrecord_tools: format, bad input, writing, resuming, verifying.

Every image is made here by a small generator, in the real format, under
pytest's ``tmp_path``; no test needs real data. Each item of the issue's "bad
input it must survive" list has a test of its own below.
"""

import hashlib
import io
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tfrecord_tools
from tfrecord_tools import record_io
from tfrecord_tools.sidecar import INCOMPLETE_PREFIX, PROGRESS_NAME, SHARD_NAME_PATTERN

REPO_ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------
# Fake data: real files in real formats


def image_bytes(format="JPEG", size=(16, 12), mode="RGB", seed=0, **save_options):
    """Bytes of a noise image: distinct per seed, so hashes differ."""
    rng = np.random.default_rng(seed)
    width, height = size
    if mode in ("RGB", "RGBA", "CMYK"):
        pixels = rng.integers(0, 256, (height, width, len(mode)), dtype=np.uint8)
    elif mode == "I;16":
        pixels = rng.integers(0, 65536, (height, width), dtype=np.uint16)
    else:
        pixels = rng.integers(0, 256, (height, width), dtype=np.uint8)
    image = Image.fromarray(pixels) if mode == "I;16" else Image.fromarray(pixels, mode=mode)
    buffer = io.BytesIO()
    image.save(buffer, format=format, **save_options)
    return buffer.getvalue()


def write_file(path, data):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def make_class_folder(root, classes=("cat", "dog", "fox"), per_class=5, size=(16, 12)):
    """``root/<class>/<i>.jpg`` with distinct noise JPEGs; returns root."""
    for class_index, name in enumerate(classes):
        for index in range(per_class):
            write_file(root / name / f"{index:03d}.jpg", image_bytes(size=size, seed=100 * class_index + index))
    return root


def read_records(path):
    """Parsed Examples of one shard, via our own reader (CRCs checked)."""
    data = Path(path).read_bytes()
    return [record_io.parse_example_bytes(record) for _, _, record in record_io.iter_records(data)]


def all_records(out):
    records = []
    for name in sorted(os.listdir(out)):
        if SHARD_NAME_PATTERN.match(name):
            records.extend((name, record) for record in read_records(Path(out) / name))
    return records


def by_filename(out):
    return {record["image/filename"][0].decode(): record for _, record in all_records(out)}


def write(src, out, **options):
    options.setdefault("workers", 1)
    return tfrecord_tools.write_dataset(src, out, **options)


# ---------------------------------------------------------------------------
# The TFRecord and Example encoding, against TensorFlow's own


def test_crc32c_known_value():
    assert record_io.crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value


def test_serialize_example_matches_tensorflow_byte_for_byte():
    tf = pytest.importorskip("tensorflow")
    # No key is a prefix of another: for such keys the protobuf implementations
    # disagree on the "deterministic" order (upb puts "big" before "b"); ours never has them.
    features = {"b": b"\x00\xffbytes", "a": 7, "c": "naïve", "large": 2**40, "neg": -3}
    ours = record_io.serialize_example(features)
    theirs = tf.train.Example(
        features=tf.train.Features(
            feature={
                "b": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"\x00\xffbytes"])),
                "a": tf.train.Feature(int64_list=tf.train.Int64List(value=[7])),
                "c": tf.train.Feature(bytes_list=tf.train.BytesList(value=["naïve".encode()])),
                "large": tf.train.Feature(int64_list=tf.train.Int64List(value=[2**40])),
                "neg": tf.train.Feature(int64_list=tf.train.Int64List(value=[-3])),
            }
        )
    ).SerializeToString(deterministic=True)
    assert ours == theirs
    parsed = record_io.parse_example_bytes(theirs)
    assert parsed == {"a": [7], "b": [b"\x00\xffbytes"], "large": [2**40], "c": ["naïve".encode()], "neg": [-3]}


def test_tensorflow_reads_our_framing_and_we_read_tensorflows(tmp_path):
    tf = pytest.importorskip("tensorflow")
    payloads = [b"", b"x", os.urandom(1000), os.urandom(70000)]
    ours = tmp_path / "ours.tfrecord"
    ours.write_bytes(b"".join(record_io.frame_record(payload) for payload in payloads))
    assert [record.numpy() for record in tf.data.TFRecordDataset(str(ours))] == payloads
    theirs = tmp_path / "theirs.tfrecord"
    with tf.io.TFRecordWriter(str(theirs)) as writer:
        for payload in payloads:
            writer.write(payload)
    assert theirs.read_bytes() == ours.read_bytes()


def test_iter_records_names_the_bad_record():
    data = bytearray(b"".join(record_io.frame_record(bytes([index]) * 50) for index in range(3)))
    data[66 + 20] ^= 0xFF  # inside the data of record 1 (each record is 50 + 16 bytes)
    with pytest.raises(record_io.RecordError, match="record 1: data checksum") as caught:
        list(record_io.iter_records(bytes(data)))
    assert caught.value.index == 1 and caught.value.offset == 66
    with pytest.raises(record_io.RecordError, match="record 2: file ends inside"):
        list(record_io.iter_records(b"".join(record_io.frame_record(b"abc") for _ in range(3))[:-3]))


# ---------------------------------------------------------------------------
# Sniffing and checking single files


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (image_bytes("JPEG"), "jpeg"),
        (image_bytes("PNG"), "png"),
        (image_bytes("GIF", mode="L"), "gif"),
        (image_bytes("BMP"), "bmp"),
        (image_bytes("WEBP"), "webp"),
        (image_bytes("TIFF"), "tiff"),
        (b"hello, I am text", None),
        (b"", None),
    ],
)
def test_sniff_format_reads_content(data, expected):
    assert tfrecord_tools.sniff_format(data[:16]) == expected


def test_fast_jpeg_path_decodes_like_pillow():
    from tfrecord_tools import encode

    for seed, mode in [(1, "RGB"), (2, "L")]:
        data = image_bytes(size=(33, 17), mode=mode, seed=seed)
        fast = encode._open_common_jpeg(data, 10**9)
        assert fast is not None and fast.mode == mode
        assert np.array_equal(np.asarray(fast), np.asarray(Image.open(io.BytesIO(data))))
    progressive = image_bytes(size=(40, 30), seed=3, progressive=True)
    assert encode._jpeg_frame_header(progressive) == (0xC2, 8, 30, 40, 3)
    assert encode._jpeg_frame_header(image_bytes(size=(5, 7), mode="L")) == (0xC0, 8, 7, 5, 1)
    # An arithmetic-coded frame (SOF9) is not kept as is: some libjpeg builds cannot read it.
    baseline = image_bytes(size=(8, 8), seed=4)
    sof = baseline.index(b"\xff\xc0")
    arithmetic = baseline[: sof + 1] + b"\xc9" + baseline[sof + 2 :]
    assert not encode.keeps_original_bytes(Image.open(io.BytesIO(baseline)), "jpeg", arithmetic)
    assert encode.keeps_original_bytes(Image.open(io.BytesIO(baseline)), "jpeg", baseline)
    assert np.array_equal(
        np.asarray(encode._open_common_jpeg(progressive, 10**9)), np.asarray(Image.open(io.BytesIO(progressive)))
    )


# ---------------------------------------------------------------------------
# Bad input it must survive: each a test


@pytest.fixture
def source(tmp_path):
    return make_class_folder(tmp_path / "src")


def rejected_lines(out):
    lines = (Path(out) / "rejected.jsonl").read_text().splitlines()
    return {item["path"]: item for item in map(json.loads, lines)}


def test_truncated_jpeg_is_rejected_and_the_rest_written(source, tmp_path):
    whole = image_bytes(size=(64, 48), seed=9)
    write_file(source / "cat" / "truncated.jpg", whole[: len(whole) // 2])
    summary = write(source, tmp_path / "out")
    assert summary["totals"]["images"] == 15
    rejected = rejected_lines(tmp_path / "out")
    assert rejected["cat/truncated.jpg"]["category"] == "corrupt"
    assert "truncated" in rejected["cat/truncated.jpg"]["reason"]
    assert tfrecord_tools.verify(tmp_path / "out").ok


def test_zero_byte_file_is_rejected(source, tmp_path):
    write_file(source / "dog" / "empty.jpg", b"")
    write(source, tmp_path / "out")
    assert rejected_lines(tmp_path / "out")["dog/empty.jpg"]["reason"] == "empty file (0 bytes)"


def test_text_file_named_jpg_is_rejected(source, tmp_path):
    write_file(source / "dog" / "notes.jpg", b"these are my notes about dogs\n")
    write(source, tmp_path / "out")
    item = rejected_lines(tmp_path / "out")["dog/notes.jpg"]
    assert item["category"] == "not_an_image" and "text" in item["reason"]


def test_png_named_jpg_is_reencoded_to_jpeg(source, tmp_path):
    write_file(source / "fox" / "really_png.jpg", image_bytes("PNG", seed=42))
    write(source, tmp_path / "out")
    record = by_filename(tmp_path / "out")["fox/really_png.jpg"]
    assert record["image/source_format"] == [b"png"] and record["image/reencoded"] == [1]
    assert record["image/format"] == [b"jpeg"] and record["image/encoded"][0][:3] == b"\xff\xd8\xff"
    assert record["image/channels"] == [3]


def test_gif_first_frame_is_used(source, tmp_path):
    frames = [Image.new("RGB", (20, 10), color) for color in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    write_file(source / "cat" / "animated.gif", buffer.getvalue())
    write(source, tmp_path / "out")
    record = by_filename(tmp_path / "out")["cat/animated.gif"]
    pixels = np.asarray(Image.open(io.BytesIO(record["image/encoded"][0])))
    assert pixels.shape == (10, 20, 3)
    assert pixels[..., 0].mean() > 200 and pixels[..., 2].mean() < 60  # red, the first frame


def test_bmp_is_reencoded(source, tmp_path):
    write_file(source / "cat" / "old.bmp", image_bytes("BMP", size=(8, 8), seed=5))
    write(source, tmp_path / "out")
    record = by_filename(tmp_path / "out")["cat/old.bmp"]
    assert record["image/source_format"] == [b"bmp"] and (record["image/height"], record["image/width"]) == ([8], [8])


def test_png_with_alpha_is_composited_over_white(source, tmp_path):
    transparent = Image.new("RGBA", (12, 12), (0, 0, 0, 0))
    buffer = io.BytesIO()
    transparent.save(buffer, format="PNG")
    write_file(source / "dog" / "cutout.png", buffer.getvalue())
    write(source, tmp_path / "out")
    record = by_filename(tmp_path / "out")["dog/cutout.png"]
    pixels = np.asarray(Image.open(io.BytesIO(record["image/encoded"][0])))
    assert pixels.shape == (12, 12, 3) and pixels.min() > 245  # white, not black
    assert json.loads((tmp_path / "out" / "dataset.json").read_text())["reencoded_by_source"] == {"png/RGBA": 1}


def test_cmyk_jpeg_is_reencoded_to_rgb(source, tmp_path):
    write_file(source / "fox" / "print.jpg", image_bytes("JPEG", mode="CMYK", seed=8))
    write(source, tmp_path / "out")
    record = by_filename(tmp_path / "out")["fox/print.jpg"]
    assert record["image/reencoded"] == [1] and record["image/channels"] == [3]
    assert Image.open(io.BytesIO(record["image/encoded"][0])).mode == "RGB"


def test_grayscale_jpeg_is_kept_and_grayscale_png_becomes_rgb(source, tmp_path):
    gray_jpeg = image_bytes("JPEG", mode="L", seed=11)
    write_file(source / "cat" / "gray.jpg", gray_jpeg)
    write_file(source / "cat" / "gray.png", image_bytes("PNG", mode="L", seed=12))
    write(source, tmp_path / "out")
    records = by_filename(tmp_path / "out")
    kept = records["cat/gray.jpg"]
    assert kept["image/encoded"] == [gray_jpeg] and kept["image/channels"] == [1] and kept["image/reencoded"] == [0]
    assert kept["image/sha256"] == [hashlib.sha256(gray_jpeg).hexdigest().encode()]
    assert records["cat/gray.png"]["image/channels"] == [3]


def test_16_bit_png_is_scaled_not_clipped(source, tmp_path):
    mid_gray = Image.fromarray(np.full((10, 10), 32768, dtype=np.uint16))  # mode I;16
    buffer = io.BytesIO()
    mid_gray.save(buffer, format="PNG")
    write_file(source / "dog" / "deep.png", buffer.getvalue())
    write(source, tmp_path / "out")
    pixels = np.asarray(Image.open(io.BytesIO(by_filename(tmp_path / "out")["dog/deep.png"]["image/encoded"][0])))
    assert abs(float(pixels.mean()) - 128) < 3  # Pillow's convert("L") would give 255


def png_header_only(width, height):
    """A PNG whose header declares ``width x height``: enough to test the pixel limit."""

    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(
        b"IEND", b""
    )


def test_very_large_image_is_rejected_before_decoding(source, tmp_path):
    write_file(source / "fox" / "huge.png", png_header_only(100_000, 100_000))
    started = time.perf_counter()
    write(source, tmp_path / "out")
    assert time.perf_counter() - started < 10  # decoding 10^10 pixels would take minutes and 30 GB
    item = rejected_lines(tmp_path / "out")["fox/huge.png"]
    assert item["category"] == "too_large" and "100000x100000" in item["reason"]


def test_large_image_under_the_limit_is_written(source, tmp_path):
    write_file(source / "fox" / "photo.jpg", image_bytes(size=(1600, 1200), seed=77, quality=70))
    summary = write(source, tmp_path / "out", max_pixels=2_000_000)
    assert summary["totals"]["images"] == 16


def test_names_with_spaces_and_non_ascii_characters(source, tmp_path):
    write_file(source / "dog" / "my dog Ødin 🐕.jpg", image_bytes(seed=21))
    write_file(source / "élan vital" / "über.jpg", image_bytes(seed=22))
    summary = write(source, tmp_path / "out")
    assert "élan vital" in summary["classes"]
    records = by_filename(tmp_path / "out")
    assert records["dog/my dog Ødin 🐕.jpg"]["image/class/text"] == [b"dog"]
    assert records["élan vital/über.jpg"]["image/class/text"] == ["élan vital".encode()]
    assert tfrecord_tools.verify(tmp_path / "out").ok


def test_hidden_files_and_folders_are_skipped_and_listed(source, tmp_path):
    write_file(source / "cat" / ".DS_Store", b"\x00\x00\x00\x01Bud1")
    write_file(source / "cat" / ".hidden.jpg", image_bytes(seed=31))
    write_file(source / ".git" / "config", b"[core]")
    summary = write(source, tmp_path / "out")
    rejected = rejected_lines(tmp_path / "out")
    assert {rejected[path]["category"] for path in ("cat/.DS_Store", "cat/.hidden.jpg", ".git")} == {"hidden"}
    assert ".git" not in summary["classes"]


def test_empty_class_folder_keeps_its_label(source, tmp_path):
    (source / "bear").mkdir()
    summary = write(source, tmp_path / "out")
    assert summary["classes"] == ["bear", "cat", "dog", "fox"]
    assert summary["empty_classes"] == ["bear"]
    assert {record["image/class/label"][0] for _, record in all_records(tmp_path / "out")} == {1, 2, 3}
    assert "bear" in tfrecord_tools.format_summary(summary)


def test_folder_with_no_class_folders_is_refused(tmp_path):
    write_file(tmp_path / "flat" / "a.jpg", image_bytes())
    with pytest.raises(tfrecord_tools.SourceFolderError, match="no class folders"):
        write(tmp_path / "flat", tmp_path / "out")


def test_symlink_loop_is_reported_not_followed(source, tmp_path):
    os.symlink(source / "cat", source / "cat" / "again")  # cat/again -> cat
    os.symlink("self_link", source / "dog" / "self_link")  # points to itself
    os.symlink(tmp_path / "nowhere.jpg", source / "dog" / "broken.jpg")
    summary = write(source, tmp_path / "out")
    rejected = rejected_lines(tmp_path / "out")
    assert rejected["cat/again"]["category"] == "symlink_loop"
    assert rejected["dog/self_link"]["category"] == "symlink_loop"
    assert rejected["dog/broken.jpg"]["category"] == "broken_link"
    assert summary["totals"]["images"] == 15


def test_output_folder_with_other_data_is_refused_and_untouched(source, tmp_path):
    out = tmp_path / "out"
    write_file(out / "thesis.txt", b"precious")
    write_file(out / "train-00000-of-00001.tfrecord", b"someone else's")
    with pytest.raises(tfrecord_tools.OutputFolderError, match="thesis.txt"):
        write(source, out)
    assert sorted(os.listdir(out)) == ["thesis.txt", "train-00000-of-00001.tfrecord"]
    assert (out / "thesis.txt").read_bytes() == b"precious"


def test_output_inside_source_is_refused(source):
    with pytest.raises(tfrecord_tools.OutputFolderError, match="inside the source"):
        write(source, source / "cat" / "out")


def test_stop_on_first_bad_file_names_it(source, tmp_path):
    write_file(source / "cat" / "broken.jpg", b"\xff\xd8\xff\xe0 not really")
    with pytest.raises(tfrecord_tools.BadImageError, match=r"cat/broken\.jpg"):
        write(source, tmp_path / "out", on_error="stop")
    assert not (tmp_path / "out" / "dataset.json").exists()


def test_killed_in_the_middle_then_resumed(source, tmp_path):
    """SIGKILL after the first shard is finished; the re-run keeps it and completes."""
    out = tmp_path / "out"
    command = [sys.executable, "-m", "tfrecord_tools", "write", str(source), str(out), "--workers", "1",
               "--num-shards", "3", "--test-fraction", "0", "--no-progress"]
    environment = {**os.environ, "TFRECORD_TOOLS_TEST_RECORD_DELAY": "0.1",
                   "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(command, env=environment, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    progress = out / PROGRESS_NAME
    while not (progress.exists() and progress.read_text().count('"file"') >= 1):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.02)
    time.sleep(0.15)  # well into the second shard (5 records x 0.1 s each)
    process.send_signal(signal.SIGKILL)
    process.communicate()

    names = sorted(os.listdir(out))
    finished = [name for name in names if SHARD_NAME_PATTERN.match(name)]
    assert finished and "dataset.json" not in names
    assert any(name.startswith(INCOMPLETE_PREFIX) for name in names)  # the shard being written
    for name in finished:  # every shard with a final name is whole
        assert len(read_records(out / name)) == 5
    kept = {name: (out / name).stat() for name in finished}
    with pytest.raises(tfrecord_tools.SidecarError, match="interrupted"):
        tfrecord_tools.verify(out)

    summary = write(source, out, num_shards=3, test_fraction=0.0)
    assert summary["shards_reused"] == len(finished) and summary["shards_written"] == 3 - len(finished)
    for name, before in kept.items():
        after = (out / name).stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert not any(name.startswith(".") for name in os.listdir(out))
    assert tfrecord_tools.verify(out).records_checked == 15


def test_a_second_write_into_the_same_folder_stops_at_once(source, tmp_path):
    """Two writes into one folder would mix their shards: the second is refused while the first runs."""
    out = tmp_path / "out"
    command = [sys.executable, "-m", "tfrecord_tools", "write", str(source), str(out), "--workers", "1",
               "--num-shards", "3", "--test-fraction", "0", "--no-progress"]
    environment = {**os.environ, "TFRECORD_TOOLS_TEST_RECORD_DELAY": "0.2", "PYTHONPATH": str(REPO_ROOT)}
    first = subprocess.Popen(command, env=environment, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not (out.exists() and any(name.startswith(INCOMPLETE_PREFIX) for name in os.listdir(out))):
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.02)
    before = sorted(os.listdir(out))
    with pytest.raises(tfrecord_tools.OutputFolderError, match="another tfrecord_tools write is running"):
        write(source, out, num_shards=3, test_fraction=0.0)
    # The refused write removed nothing (the running write may have renamed its temporary files meanwhile).
    assert {name for name in before if not name.startswith(INCOMPLETE_PREFIX)} <= set(os.listdir(out))
    _, stderr = first.communicate(timeout=60)
    assert first.returncode == 0, stderr
    assert tfrecord_tools.verify(out).records_checked == 15
    assert write(source, out, num_shards=3, test_fraction=0.0)["shards_reused"] == 3  # the lock is gone


# ---------------------------------------------------------------------------
# Writing: split, spread, determinism, sidecar


def test_stratified_split_and_even_spread_over_shards(tmp_path):
    source = make_class_folder(tmp_path / "src", classes=("a", "b", "c"), per_class=20, size=(8, 8))
    summary = write(source, tmp_path / "out", test_fraction=0.25, num_shards=4, seed=3)
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


def test_same_inputs_and_seed_give_byte_identical_output(tmp_path):
    source = make_class_folder(tmp_path / "src", per_class=8)
    write_file(source / "cat" / "alpha.png", image_bytes("PNG", mode="RGBA", seed=1))
    write(source, tmp_path / "one", seed=5, num_shards=2, workers=1)
    write(source, tmp_path / "two", seed=5, num_shards=2, workers=2)
    write(source, tmp_path / "other_seed", seed=6, num_shards=2, workers=1)
    names = sorted(os.listdir(tmp_path / "one"))
    assert names == sorted(os.listdir(tmp_path / "two"))
    for name in names:
        if name != "dataset.json":
            assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    sidecars = [json.loads((tmp_path / folder / "dataset.json").read_text()) for folder in ("one", "two")]
    assert sidecars[0] == sidecars[1]
    assert (tmp_path / "one" / "train.tfrecord-00000-of-00002").read_bytes() != (
        tmp_path / "other_seed" / "train.tfrecord-00000-of-00002"
    ).read_bytes()


def test_sidecar_describes_the_shards(source, tmp_path):
    summary = write(source, tmp_path / "out", num_shards=2)
    sidecar = tfrecord_tools.read_sidecar(tmp_path / "out")
    assert sidecar["classes"] == ["cat", "dog", "fox"] and sidecar["label_to_index"] == {"cat": 0, "dog": 1, "fox": 2}
    assert set(sidecar["features"]) >= {"image/encoded", "image/class/label", "image/sha256", "image/filename"}
    assert sidecar["seed"] == 0 and sidecar["tool_version"] == tfrecord_tools.__version__
    for split in sidecar["splits"].values():
        for shard in split["shards"]:
            data = (tmp_path / "out" / shard["file"]).read_bytes()
            assert shard["bytes"] == len(data) and shard["sha256"] == hashlib.sha256(data).hexdigest()
    assert summary["images_per_second"] > 0 and "images/s" in tfrecord_tools.format_summary(summary)


def test_duplicates_across_splits_are_reported(tmp_path):
    source = make_class_folder(tmp_path / "src", classes=("a",), per_class=10)
    for index in range(10):  # every image twice: some copies must land in different splits
        write_file(source / "a" / f"copy_{index}.jpg", (source / "a" / f"{index:03d}.jpg").read_bytes())
    summary = write(source, tmp_path / "out", test_fraction=0.5)
    duplicates = summary["duplicates"]
    assert duplicates["across_splits_count"] + duplicates["within_split_groups"] == 10
    assert duplicates["across_splits_count"] >= 1
    assert "more than one split" in tfrecord_tools.format_summary(summary)


def test_existing_split_folders_are_kept(tmp_path):
    make_class_folder(tmp_path / "src" / "train", per_class=4)
    make_class_folder(tmp_path / "src" / "test", per_class=2)
    summary = write(tmp_path / "src", tmp_path / "out")
    assert summary["layout"] == "splits" and summary["test_fraction"] is None
    assert summary["splits"]["train"]["images"] == 12 and summary["splits"]["test"]["images"] == 6


def test_rerun_reuses_and_changed_settings_need_overwrite(source, tmp_path):
    out = tmp_path / "out"
    write(source, out, num_shards=2)
    again = write(source, out, num_shards=2)
    assert again["shards_reused"] == 4 and again["shards_written"] == 0
    with pytest.raises(tfrecord_tools.OutputFolderError, match="overwrite"):
        write(source, out, num_shards=3)
    replaced = write(source, out, num_shards=3, overwrite=True)
    assert replaced["totals"]["shards"] == 6
    assert sorted(name for name in os.listdir(out) if SHARD_NAME_PATTERN.match(name)) == [
        f"{split}.tfrecord-0000{index}-of-00003" for split in ("test", "train") for index in range(3)
    ]
    assert tfrecord_tools.verify(out).ok


def test_scan_images_alone_for_the_assignment(source):
    write_file(source / "dog" / "bad.jpg", b"nope")
    scan = tfrecord_tools.scan_images(source, workers=1)
    paths, labels = scan.paths_and_labels()
    assert len(paths) == 15 and sorted(set(labels)) == [0, 1, 2]
    assert [item.relative_path for item in scan.rejected] == ["dog/bad.jpg"]
    assert scan.class_counts() == {"cat": 5, "dog": 5, "fox": 5}


# ---------------------------------------------------------------------------
# verify


def flip_byte(path, offset):
    data = bytearray(Path(path).read_bytes())
    data[offset] ^= 0x01
    Path(path).write_bytes(bytes(data))


def test_verify_names_shard_and_record_of_a_corrupt_byte(source, tmp_path):
    out = tmp_path / "out"
    write(source, out, num_shards=1, test_fraction=0)
    shard = out / "train.tfrecord-00000-of-00001"
    first_record_size = 16 + struct.unpack("<Q", shard.read_bytes()[:8])[0]
    flip_byte(shard, first_record_size + 40)  # inside record 1
    report = tfrecord_tools.verify(out, raise_on_error=False)
    assert not report.ok
    messages = [str(problem) for problem in report.problems]
    assert any("train.tfrecord-00000-of-00001 record 1: data checksum" in text for text in messages)
    assert not any("record 1: record 1" in text for text in messages)  # said once
    assert any("SHA-256" in text for text in messages)
    with pytest.raises(tfrecord_tools.VerifyError):
        tfrecord_tools.verify(out)


def test_verify_finds_missing_and_unlisted_shards(source, tmp_path):
    out = tmp_path / "out"
    write(source, out, num_shards=2)
    os.rename(out / "test.tfrecord-00001-of-00002", out / "test.tfrecord-00001-of-00003")
    report = tfrecord_tools.verify(out, raise_on_error=False)
    text = "\n".join(map(str, report.problems))
    assert "test.tfrecord-00001-of-00002: cannot read" in text
    assert "test.tfrecord-00001-of-00003: shard file is not listed" in text


def test_verify_catches_a_wrong_label(source, tmp_path):
    out = tmp_path / "out"
    write(source, out, num_shards=1, test_fraction=0)
    shard = out / "train.tfrecord-00000-of-00001"
    records = [record for _, _, record in record_io.iter_records(shard.read_bytes())]
    features = record_io.parse_example_bytes(records[2])
    features = {name: values[0] for name, values in features.items()}
    features["image/class/label"] = (features["image/class/label"] + 1) % 3
    records[2] = record_io.serialize_example(features)
    data = b"".join(map(record_io.frame_record, records))
    shard.write_bytes(data)
    sidecar = json.loads((out / "dataset.json").read_text())
    sidecar["splits"]["train"]["shards"][0]["sha256"] = hashlib.sha256(data).hexdigest()
    (out / "dataset.json").write_text(json.dumps(sidecar))
    report = tfrecord_tools.verify(out, raise_on_error=False)
    assert [str(problem) for problem in report.problems] == [
        f"train.tfrecord-00000-of-00001 record 2: label {features['image/class/label']} does not match class "
        f"{features['image/class/text'].decode()!r}, which has label {(features['image/class/label'] - 1) % 3}"
    ]


def test_verify_without_sidecar_says_what_is_missing(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(tfrecord_tools.SidecarError, match="dataset.json is missing"):
        tfrecord_tools.verify(tmp_path / "empty")


def test_info_and_contact_sheet(source, tmp_path):
    out = tmp_path / "out"
    write(source, out, num_shards=1)
    info = tfrecord_tools.dataset_info(out)
    assert info["splits"]["train"]["images"] == 12 and info["classes"] == ["cat", "dog", "fox"]
    table = tfrecord_tools.format_info(info)
    assert "fox" in table and "train" in table
    path = tfrecord_tools.contact_sheet(out, out / "contact_sheet.png", per_class=3, thumbnail_px=32)
    assert Image.open(path).size == (160 + 3 * 32, 3 * 32)
    assert tfrecord_tools.verify(out).ok  # the contact sheet is one of our files


# ---------------------------------------------------------------------------
# Review findings: each a test that failed before its fix


def jpeg_without_end_marker():
    """A JPEG whose last two bytes (FF D9) are cut off; Pillow decodes it, tf.io.decode_jpeg does not."""
    pixels = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()[:-2]


def test_jpeg_end_marker_rule():
    from tfrecord_tools import encode

    whole = image_bytes(size=(16, 12), seed=3)
    assert encode.jpeg_ends_properly(whole)
    assert encode.jpeg_ends_properly(whole + b"\x00" * 64)  # padding after the marker: TensorFlow reads it
    assert encode.jpeg_ends_properly(image_bytes(size=(40, 30), seed=3, progressive=True) + b"trailer")
    assert not encode.jpeg_ends_properly(whole[:-2])
    assert not encode.jpeg_ends_properly(whole[:-2] + b"\x00" * 64)  # zeros in place of the marker
    assert not encode.jpeg_ends_properly(whole[:-1])
    cut = jpeg_without_end_marker()
    checked = tfrecord_tools.encode.check_image(cut)
    assert checked["reencode"] and checked["channels"] == 3  # kept as is before the fix
    assert encode.jpeg_ends_properly(encode.stored_jpeg_bytes(cut))
    with pytest.raises(encode.ImageCheckError, match="truncated") as caught:  # cut, then padded
        encode.check_image(whole[: len(whole) * 2 // 3] + b"\x00" * 200)
    assert caught.value.category == "corrupt"


def test_verify_flags_a_stored_jpeg_without_end_marker(source, tmp_path):
    """Shards written before the fix hold such JPEGs as they are: verify must say so."""
    out = tmp_path / "out"
    write(source, out, num_shards=1, test_fraction=0)
    shard = out / "train.tfrecord-00000-of-00001"
    records = [record for _, _, record in record_io.iter_records(shard.read_bytes())]
    features = {name: values[0] for name, values in record_io.parse_example_bytes(records[1]).items()}
    cut = jpeg_without_end_marker()
    features.update({"image/encoded": cut, "image/height": 64, "image/width": 64, "image/channels": 3,
                     "image/reencoded": 0, "image/sha256": hashlib.sha256(cut).hexdigest().encode()})
    records[1] = record_io.serialize_example(features)
    data = b"".join(map(record_io.frame_record, records))
    shard.write_bytes(data)
    sidecar = json.loads((out / "dataset.json").read_text())
    sidecar["splits"]["train"]["shards"][0].update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    sidecar["splits"]["train"].update(bytes=len(data))
    sidecar["splits"]["train"]["image_size"].update(max_height=64, max_width=64)
    (out / "dataset.json").write_text(json.dumps(sidecar))
    problems = [str(problem) for problem in tfrecord_tools.verify(out, raise_on_error=False).problems]
    assert len(problems) == 1 and "record 1: JPEG has no end-of-image marker" in problems[0], problems


def test_symlinks_back_into_source_do_not_relabel_images(source, tmp_path):
    os.symlink(".", source / "a_loop")  # SRC/a_loop -> SRC
    os.symlink("..", source / "cat" / "up")  # SRC/cat/up -> SRC: would label dog and fox images cat
    os.symlink("../dog", source / "cat" / "dogs")  # into another class folder
    os.symlink(source / "fox", source / "kitsune")  # a class folder twice, under two names
    outside = make_class_folder(tmp_path / "elsewhere", classes=("owl",), per_class=2)
    os.symlink(outside / "owl", source / "owl")  # a class folder that lives elsewhere is fine
    summary = write(source, tmp_path / "out")
    assert summary["classes"] == ["cat", "dog", "fox", "owl"] and summary["totals"]["images"] == 17
    for path, record in by_filename(tmp_path / "out").items():
        assert record["image/class/text"] == [path.split("/")[0].encode()], path
    rejected = rejected_lines(tmp_path / "out")
    for path in ("a_loop", "cat/up", "cat/dogs", "kitsune"):
        assert rejected[path]["category"] == "symlink_loop", rejected[path]
        assert "back into SRC" in rejected[path]["reason"], rejected[path]


def test_side_over_jpeg_limit_is_rejected_not_a_crash(source, tmp_path):
    strip = np.random.default_rng(1).integers(0, 256, (8, 70_000), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(strip, mode="L").save(buffer, format="PNG")
    write_file(source / "cat" / "strip.png", buffer.getvalue())
    summary = write(source, tmp_path / "out")
    assert summary["totals"]["images"] == 15
    item = rejected_lines(tmp_path / "out")["cat/strip.png"]
    assert item["category"] == "too_large" and "70000x8" in item["reason"] and "65,500" in item["reason"]


def test_write_shard_errors_name_the_file(tmp_path):
    from tfrecord_tools import write as write_module

    big = tmp_path / "strip.png"
    buffer = io.BytesIO()
    Image.new("L", (70_000, 8)).save(buffer, format="PNG")
    big.write_bytes(buffer.getvalue())
    gone = tmp_path / "gone.jpg"

    def job(path):
        sha256 = hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "0" * 64
        return {"out": str(tmp_path), "file": "train.tfrecord-00000-of-00001", "plan_sha256": "x",
                "max_pixels": 10**9, "entries": [(str(path), path.name, "a", 0, sha256, "png", True, 8, 70_000, 3)]}

    with pytest.raises(tfrecord_tools.ImageWriteError, match=r"strip\.png: cannot be stored: .*65,500"):
        write_module.write_shard(job(big))
    with pytest.raises(tfrecord_tools.SourceChangedError, match=r"gone\.jpg cannot be read any more"):
        write_module.write_shard(job(gone))
    assert sorted(os.listdir(tmp_path)) == ["strip.png"]  # no temporary shard left behind


def test_a_dead_worker_is_an_error_not_a_hang():
    from tfrecord_tools import _pool

    with _pool.start_pool(2) as pool:
        assert list(pool.map(abs, [-1, -2, -3], doing="testing")) == [1, 2, 3]
        # The exit code is named when the dead worker was seen before it was reaped; a worker
        # started and dead within one submit() is not, and the message says what is likely.
        with pytest.raises(tfrecord_tools.WorkerDiedError,
                           match=r"a worker process died \((exit code 3|killed for memory\?)\) while testing"):
            list(pool.map(os._exit, [3], doing="testing"))


def test_a_dead_workers_exit_code_is_asked_for_again_while_another_thread_collects_it():
    """The executor's thread reaps the same children: one look may see None before the code is stored."""
    from tfrecord_tools import _pool

    class ReapedElsewhere:
        def __init__(self, code, unknown_looks):
            self.code, self.unknown_looks = code, unknown_looks

        def join(self, timeout=None):
            pass

        @property
        def exitcode(self):
            self.unknown_looks -= 1
            return None if self.unknown_looks >= 0 else self.code

    processes = [ReapedElsewhere(-signal.SIGKILL, unknown_looks=3), ReapedElsewhere(-signal.SIGTERM, 0)]
    assert _pool._exit_codes(processes, seconds=5) == [-signal.SIGKILL, -signal.SIGTERM]
    still_running = ReapedElsewhere(0, unknown_looks=10**9)
    started = time.monotonic()
    assert _pool._exit_codes([still_running], seconds=0.2) == [None]
    assert time.monotonic() - started < 2


@pytest.mark.skipif(not os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children"), reason="needs Linux /proc")
def test_worker_killed_during_write_stops_it_with_a_clear_error(source, tmp_path):
    """The out-of-memory killer's SIGKILL to one worker: one line, exit 1, within seconds; a re-run finishes."""
    out = tmp_path / "out"
    command = [sys.executable, "-m", "tfrecord_tools", "write", str(source), str(out), "--workers", "2",
               "--num-shards", "2", "--no-progress"]
    environment = {**os.environ, "TFRECORD_TOOLS_TEST_RECORD_DELAY": "0.3", "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(command, env=environment, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (out.exists() and any(name.startswith(INCOMPLETE_PREFIX) for name in os.listdir(out))):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.02)
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    workers = [int(pid) for pid in children
               if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
               and b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()]
    os.kill(workers[0], signal.SIGKILL)
    try:
        _, stderr = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail("the write hung after a worker died")
    assert process.returncode == 1, stderr
    assert "a worker process died (killed with SIGKILL: out of memory?) while writing shards" in stderr
    assert "run the same command again" in stderr and "Traceback" not in stderr
    assert write(source, out, num_shards=2)["totals"]["images"] == 15
    assert tfrecord_tools.verify(out).ok


def test_class_folder_name_that_is_not_utf8(source, tmp_path):
    import random

    from tfrecord_tools.write import _seeded_random

    bad = os.path.join(os.fsencode(source), b"bad\xff")
    os.mkdir(bad)
    with open(os.path.join(bad, b"1.jpg"), "wb") as handle:
        handle.write(image_bytes(seed=50))
    with open(os.path.join(bad, b"2.jpg"), "wb") as handle:
        handle.write(image_bytes(seed=51))
    summary = write(source, tmp_path / "out")
    assert "bad\udcff" in summary["classes"] and summary["totals"]["images"] == 17
    assert {record["image/class/text"][0] for _, record in all_records(tmp_path / "out")} >= {b"bad\xff"}
    assert tfrecord_tools.verify(tmp_path / "out").ok
    # Seeds of valid names are unchanged, so earlier outputs stay byte-identical.
    assert _seeded_random("0/split/élan").random() == random.Random("0/split/élan").random()


def test_val_and_valid_name_the_validation_split(tmp_path):
    make_class_folder(tmp_path / "src" / "train", per_class=4)
    make_class_folder(tmp_path / "src" / "val", per_class=2)
    summary = write(tmp_path / "src", tmp_path / "out")
    assert summary["layout"] == "splits" and summary["classes"] == ["cat", "dog", "fox"]
    assert summary["splits"]["validation"]["images"] == 6 and summary["splits"]["train"]["images"] == 12
    make_class_folder(tmp_path / "src2" / "valid", per_class=1)
    make_class_folder(tmp_path / "src2" / "test", per_class=1)
    assert tfrecord_tools.scan_images(tmp_path / "src2", workers=1).images[-1].split == "validation"


def test_split_folders_mixed_with_other_folders_are_refused(tmp_path):
    make_class_folder(tmp_path / "src" / "train", per_class=1)
    make_class_folder(tmp_path / "src", classes=("dog",), per_class=1)
    with pytest.raises(tfrecord_tools.SourceFolderError, match=r"mixes split folders \(train\) with other folders"):
        write(tmp_path / "src", tmp_path / "out")
    make_class_folder(tmp_path / "two" / "val", per_class=1)
    make_class_folder(tmp_path / "two" / "validation", per_class=1)
    with pytest.raises(tfrecord_tools.SourceFolderError, match="2 folders for the validation split"):
        tfrecord_tools.scan_images(tmp_path / "two", workers=1)


def test_default_shards_do_not_depend_on_workers(tmp_path):
    source = make_class_folder(tmp_path / "src", per_class=8, size=(8, 8))
    one = write(source, tmp_path / "one", workers=1)
    two = write(source, tmp_path / "two", workers=2)
    assert one["totals"]["shards"] == two["totals"]["shards"] == 8  # 4 per split
    names = sorted(os.listdir(tmp_path / "one"))
    assert names == sorted(os.listdir(tmp_path / "two"))
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    again = write(source, tmp_path / "one", workers=2)  # another --workers: reused, not refused
    assert again["shards_reused"] == 8 and again["shards_written"] == 0
    small = make_class_folder(tmp_path / "small", classes=("a",), per_class=3)
    assert write(small, tmp_path / "small_out", test_fraction=0)["totals"]["shards"] == 3  # one per image


def test_stop_on_error_ignores_hidden_files(source, tmp_path):
    write_file(source / "cat" / ".DS_Store", b"\x00\x00\x00\x01Bud1")
    summary = write(source, tmp_path / "out", on_error="stop")
    assert summary["totals"]["images"] == 15
    assert rejected_lines(tmp_path / "out")["cat/.DS_Store"]["category"] == "hidden"
    write_file(source / "dog" / "broken.jpg", b"\xff\xd8\xff\xe0 not really")
    with pytest.raises(tfrecord_tools.BadImageError, match=r"dog/broken\.jpg"):
        write(source, tmp_path / "out2", on_error="stop")


@pytest.mark.parametrize("name", ["dataset.json", "rejected.jsonl"])
def test_crash_while_writing_the_sidecar_does_not_block_the_rerun(source, tmp_path, monkeypatch, name):
    out = tmp_path / "out"
    real_replace = os.replace

    def crash_on(source_path, target_path):
        if os.path.basename(target_path) == name:
            raise OSError(28, "No space left on device (simulated)")
        return real_replace(source_path, target_path)

    monkeypatch.setattr(os, "replace", crash_on)
    with pytest.raises(OSError, match="simulated"):
        write(source, out, num_shards=1)
    monkeypatch.setattr(os, "replace", real_replace)
    leftovers = [item for item in os.listdir(out) if name in item]
    assert leftovers and all(item.startswith(INCOMPLETE_PREFIX) for item in leftovers)
    summary = write(source, out, num_shards=1)
    assert summary["shards_reused"] == 2
    assert not [item for item in os.listdir(out) if item.startswith(".")]
    assert tfrecord_tools.verify(out).ok


def test_contact_sheet_of_a_damaged_shard_names_shard_and_record(source, tmp_path):
    out = tmp_path / "out"
    write(source, out, num_shards=1, test_fraction=0)
    shard = out / "train.tfrecord-00000-of-00001"
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(tfrecord_tools.TFRecordToolsError, match=r"train\.tfrecord-00000-of-00001 record 14 .*verify"):
        tfrecord_tools.contact_sheet(out, tmp_path / "sheet.png", per_class=10)


def test_cli_oserror_without_a_file_name(monkeypatch, capsys, tmp_path):
    from tfrecord_tools import __main__ as cli

    def fail(arguments):
        raise OSError("No space left on device")

    monkeypatch.setattr(cli, "_run", fail)
    assert cli.main(["verify", str(tmp_path)]) == 1
    assert capsys.readouterr().err == "tfrecord_tools verify: error: No space left on device\n"


def test_os_metadata_files_in_out_do_not_block_writing(source, tmp_path):
    out = tmp_path / "out"
    write_file(out / ".DS_Store", b"\x00\x00\x00\x01Bud1")
    write_file(out / "Thumbs.db", b"thumbs")
    write(source, out, num_shards=1)
    assert write(source, out, num_shards=1)["shards_reused"] == 2
    assert (out / ".DS_Store").exists() and (out / "Thumbs.db").read_bytes() == b"thumbs"
    assert tfrecord_tools.verify(out).ok


def test_class_names_in_two_unicode_forms_are_refused(tmp_path):
    source = make_class_folder(tmp_path / "src", classes=("caf\u00e9", "cafe\u0301"), per_class=1)
    with pytest.raises(tfrecord_tools.SourceFolderError, match="two Unicode forms") as caught:
        write(source, tmp_path / "out")
    assert r"'caf\xe9'" in str(caught.value) and r"'cafe\u0301'" in str(caught.value)


def test_write_help_does_not_claim_verified_shards():
    from tfrecord_tools.__main__ import build_parser

    parser = build_parser()
    assert "verified" not in parser.description and "decode-checked" in parser.description
    assert "verified" not in (tfrecord_tools.__doc__.splitlines()[0])
