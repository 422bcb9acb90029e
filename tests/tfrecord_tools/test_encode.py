"""Sniffing, decode-checking and storing single images: what is kept, re-encoded or rejected, and why."""

import hashlib
import io
import json
import random
import tracemalloc

import numpy as np
import pytest
import simplejpeg
from PIL import Image, JpegImagePlugin, PngImagePlugin

import tfrecord_tools
from tfrecord_tools import encode, jpeg_markers

from fakes import (
    arithmetic_jpeg,
    by_filename,
    image_bytes,
    jpeg_without_end_marker,
    make_class_folder,
    photo_bytes,
    pillow_decodes,
    png_header_only,
    read_records,
    rejected_lines,
    rotated_jpeg,
    write_file,
    write_records,
)


def test_the_strict_jpeg_decode_gives_pillows_pixels():
    progressive = image_bytes(size=(40, 30), seed=3, progressive=True)
    cmyk = image_bytes(size=(20, 10), mode="CMYK", seed=5)
    for data, mode in [(image_bytes(size=(33, 17), seed=1), "RGB"), (image_bytes(size=(33, 17), mode="L", seed=2), "L"),
                       (progressive, "RGB"), (cmyk, "CMYK")]:
        decoded, source_format = encode.open_checked(data)
        assert source_format == "jpeg" and decoded.mode == mode
        assert np.array_equal(np.asarray(decoded), np.asarray(Image.open(io.BytesIO(data))))
    # An arithmetic-coded frame (SOF9) is not kept as is: some libjpeg builds cannot read it.
    baseline = image_bytes(size=(8, 8), seed=4)
    sof = baseline.index(b"\xff\xc0")
    arithmetic = baseline[: sof + 1] + b"\xc9" + baseline[sof + 2 :]
    assert not encode.keeps_original_bytes("RGB", "jpeg", arithmetic)
    assert encode.keeps_original_bytes("RGB", "jpeg", baseline)


def test_truncated_jpeg_is_rejected_and_the_rest_written(source, tmp_path):
    whole = image_bytes(size=(64, 48), seed=9)
    write_file(source / "cat" / "truncated.jpg", whole[: len(whole) // 2])
    summary = write_records(source, tmp_path / "out")
    assert summary["totals"]["images"] == 15
    rejected = rejected_lines(tmp_path / "out")
    assert rejected["cat/truncated.jpg"]["category"] == "corrupt"
    assert "truncated" in rejected["cat/truncated.jpg"]["reason"]
    assert tfrecord_tools.verify(tmp_path / "out").ok


def test_png_named_jpg_is_reencoded_to_jpeg(source, tmp_path):
    write_file(source / "fox" / "really_png.jpg", image_bytes("PNG", seed=42))
    write_records(source, tmp_path / "out")
    record = by_filename(tmp_path / "out")["fox/really_png.jpg"]
    assert record["image/source_format"] == [b"png"] and record["image/reencoded"] == [1]
    assert record["image/format"] == [b"jpeg"] and record["image/encoded"][0][:3] == b"\xff\xd8\xff"
    assert record["image/channels"] == [3]


def test_gif_first_frame_is_used(source, tmp_path):
    frames = [Image.new("RGB", (20, 10), color) for color in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    write_file(source / "cat" / "animated.gif", buffer.getvalue())
    write_records(source, tmp_path / "out")
    record = by_filename(tmp_path / "out")["cat/animated.gif"]
    pixels = np.asarray(Image.open(io.BytesIO(record["image/encoded"][0])))
    assert pixels.shape == (10, 20, 3)
    assert pixels[..., 0].mean() > 200 and pixels[..., 2].mean() < 60  # red, the first frame


def test_bmp_is_reencoded(source, tmp_path):
    write_file(source / "cat" / "old.bmp", image_bytes("BMP", size=(8, 8), seed=5))
    write_records(source, tmp_path / "out")
    record = by_filename(tmp_path / "out")["cat/old.bmp"]
    assert record["image/source_format"] == [b"bmp"] and (record["image/height"], record["image/width"]) == ([8], [8])


def test_png_with_alpha_is_composited_over_white(source, tmp_path):
    transparent = Image.new("RGBA", (12, 12), (0, 0, 0, 0))
    buffer = io.BytesIO()
    transparent.save(buffer, format="PNG")
    write_file(source / "dog" / "cutout.png", buffer.getvalue())
    write_records(source, tmp_path / "out")
    record = by_filename(tmp_path / "out")["dog/cutout.png"]
    pixels = np.asarray(Image.open(io.BytesIO(record["image/encoded"][0])))
    assert pixels.shape == (12, 12, 3) and pixels.min() > 245  # white, not black
    assert json.loads((tmp_path / "out" / "dataset.json").read_text())["reencoded_by_source"] == {"png/RGBA": 1}


def test_cmyk_jpeg_is_reencoded_to_rgb(source, tmp_path):
    write_file(source / "fox" / "print.jpg", image_bytes("JPEG", mode="CMYK", seed=8))
    write_records(source, tmp_path / "out")
    record = by_filename(tmp_path / "out")["fox/print.jpg"]
    assert record["image/reencoded"] == [1] and record["image/channels"] == [3]
    assert Image.open(io.BytesIO(record["image/encoded"][0])).mode == "RGB"


def test_grayscale_jpeg_is_kept_and_grayscale_png_becomes_rgb(source, tmp_path):
    gray_jpeg = image_bytes("JPEG", mode="L", seed=11)
    write_file(source / "cat" / "gray.jpg", gray_jpeg)
    write_file(source / "cat" / "gray.png", image_bytes("PNG", mode="L", seed=12))
    write_records(source, tmp_path / "out")
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
    write_records(source, tmp_path / "out")
    pixels = np.asarray(Image.open(io.BytesIO(by_filename(tmp_path / "out")["dog/deep.png"]["image/encoded"][0])))
    assert abs(float(pixels.mean()) - 128) < 3  # Pillow's convert("L") would give 255


def test_very_large_image_is_rejected_before_decoding(source, tmp_path, monkeypatch):
    write_file(source / "fox" / "huge.png", png_header_only(100_000, 100_000))
    real_load = PngImagePlugin.PngImageFile.load

    def load(image):  # decoding 10^10 pixels would take minutes and 30 GB
        assert image.size != (100_000, 100_000), "the huge PNG was decoded"
        return real_load(image)

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", load)
    write_records(source, tmp_path / "out")  # one process: the patched class is the one used
    item = rejected_lines(tmp_path / "out")["fox/huge.png"]
    assert item["category"] == "too_large" and "100000x100000" in item["reason"]


def test_large_image_under_the_limit_is_written(source, tmp_path):
    write_file(source / "fox" / "photo.jpg", image_bytes(size=(1600, 1200), seed=77, quality=70))
    summary = write_records(source, tmp_path / "out", max_pixels=2_000_000)
    assert summary["totals"]["images"] == 16


def test_jpeg_end_marker_rule():
    whole = image_bytes(size=(16, 12), seed=3)
    cut = jpeg_without_end_marker()
    checked = tfrecord_tools.encode.check_image(cut)
    assert checked["reencode"] and checked["channels"] == 3  # kept as is before the fix
    assert jpeg_markers.jpeg_ends_properly(encode.stored_jpeg_bytes(cut))
    with pytest.raises(encode.ImageCheckError, match="truncated") as caught:  # cut, then padded
        encode.check_image(whole[: len(whole) * 2 // 3] + b"\x00" * 200)
    assert caught.value.category == "corrupt"


def test_side_over_jpeg_limit_is_rejected_not_a_crash(source, tmp_path):
    strip = np.random.default_rng(1).integers(0, 256, (8, 70_000), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(strip, mode="L").save(buffer, format="PNG")
    write_file(source / "cat" / "strip.png", buffer.getvalue())
    summary = write_records(source, tmp_path / "out")
    assert summary["totals"]["images"] == 15
    item = rejected_lines(tmp_path / "out")["cat/strip.png"]
    assert item["category"] == "too_large" and "70000x8" in item["reason"] and "65,500" in item["reason"]


# B4
def test_strict_check_rejects_jpegs_with_destroyed_pixels(tmp_path):
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
    write_records(source, tmp_path / "out", test_fraction=0)
    rejected = rejected_lines(tmp_path / "out")
    assert rejected["a/cut.jpg"]["category"] == rejected["a/zeroed.jpg"]["category"] == "corrupt"
    assert "libjpeg says" in rejected["a/cut.jpg"]["reason"]
    assert "a/good.jpg" not in rejected


# B4
def test_png_chunk_crc_is_checked():
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, format="PNG")
    damaged = bytearray(buffer.getvalue())
    damaged[damaged.index(b"IDAT") + 4 + 2] ^= 1  # a flip that zlib and Pillow do not notice
    assert pillow_decodes(bytes(damaged))
    with pytest.raises(encode.ImageCheckError, match="CRC of its IDAT chunk"):
        encode.check_image(bytes(damaged))


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
    summary = write_records(source, tmp_path / "out", test_fraction=0)
    return summary, rejected_lines(tmp_path / "out")


def test_animated_files_are_reported_and_previews_refused(source_with_oddities):
    summary, rejected = source_with_oddities
    assert summary["totals"]["multi_frame"] == 1 and summary["multi_frame_files"] == ["a/animated.gif"]
    assert "only the first is stored" in tfrecord_tools.format_summary(summary)
    assert rejected["a/preview.tif"]["category"] == "preview_only"


def test_exif_orientation_is_applied_only_when_asked(tmp_path):
    source = tmp_path / "src"
    write_file(source / "a" / "turned.jpg", rotated_jpeg())
    write_records(source, tmp_path / "as_is", test_fraction=0)
    write_records(source, tmp_path / "upright", test_fraction=0, apply_orientation=True)
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
    write_file(source / "a" / "just_over.jpg", photo_bytes(size=(80, 60), seed=4))  # decoded at full scale
    out = tmp_path / "out"
    summary = write_records(source, out, test_fraction=0, max_side=64, jpeg_quality=85, num_shards=1)
    records = {record["image/filename"][0].decode(): record for record in
               read_records(next(out.glob("train.tfrecord-*")))}
    sizes = {name: (record["image/width"][0], record["image/height"][0]) for name, record in records.items()}
    assert sizes == {"a/wide.jpg": (64, 16), "a/tall.png": (21, 64), "a/small.jpg": (40, 30),
                     "a/just_over.jpg": (64, 48)}
    for name, record in records.items():
        assert Image.open(io.BytesIO(record["image/encoded"][0])).size == sizes[name]
    assert records["a/small.jpg"]["image/reencoded"] == [0]  # small enough: stored byte for byte
    resize = json.loads((out / "dataset.json").read_text())["resize"]
    assert resize["max_side"] == 64 and resize["jpeg_quality"] == 85 and "LANCZOS" in resize["filter"]
    assert resize["resized_images"] == 3 and summary["splits"]["train"]["image_size"]["max_width"] == 64
    assert tfrecord_tools.verify(out).ok
    with pytest.raises(tfrecord_tools.OutputFolderError):  # other settings: other shards
        write_records(source, out, test_fraction=0, max_side=32, num_shards=1)


def test_jpeg_quality_applies_to_every_re_encoding_and_is_recorded(tmp_path):


    source = tmp_path / "src"
    png = image_bytes(format="PNG", size=(64, 48), seed=7)
    for name in ("a", "b"):
        write_file(source / name / "0.png", png)
    stored = {}
    for quality in (None, 40):
        out = tmp_path / f"out{quality}"
        summary = write_records(source, out, test_fraction=0, num_shards=1, jpeg_quality=quality)
        stored[quality] = read_records(next(out.glob("train.tfrecord-*")))[0]["image/encoded"][0]
        assert summary["jpeg_quality"] == (quality or encode.REENCODE_JPEG_QUALITY)
        assert summary["resize"] is None
    expected = encode.to_rgb_jpeg(Image.open(io.BytesIO(png)), quality=40)
    assert stored[40] == expected and stored[None] != expected
    # The quality is part of the plan: the other quality is no silent re-use of the old shards.
    with pytest.raises(tfrecord_tools.OutputFolderError):
        write_records(source, tmp_path / "out40", test_fraction=0, num_shards=1, jpeg_quality=60)


def test_every_stored_jpeg_decodes_in_tensorflow(tmp_path):
    """A JPEG without its end-of-image marker passes Pillow; stored as is, it failed tf.io.decode_jpeg mid-epoch."""
    tf = pytest.importorskip("tensorflow")
    source = make_class_folder(tmp_path / "src", classes=("a", "b"), per_class=3)
    cut = jpeg_without_end_marker()
    whole = image_bytes(size=(16, 12), seed=7)
    write_file(source / "a" / "no_end_marker.jpg", cut)
    write_file(source / "a" / "zeros_for_end_marker.jpg", whole[:-2] + b"\x00" * 64)  # data whole, marker zeroed
    write_file(source / "b" / "cut_and_padded.jpg", whole[: len(whole) * 2 // 3] + b"\x00" * 200)
    write_file(source / "b" / "padded_after_end.jpg", whole + b"\x00" * 64)  # TensorFlow reads this one
    out = tmp_path / "out"
    write_records(source, out, test_fraction=0)
    records = {}
    for shard in tfrecord_tools.shard_files(out, "train"):
        for features in read_records(shard):
            encoded = features["image/encoded"][0]
            image = tf.io.decode_jpeg(encoded, channels=3)  # raised "Invalid JPEG data" before the fix
            assert image.shape == (features["image/height"][0], features["image/width"][0], 3)
            records[features["image/filename"][0].decode()] = features
    assert records["a/no_end_marker.jpg"]["image/reencoded"] == [1]
    assert records["a/zeros_for_end_marker.jpg"]["image/reencoded"] == [1]
    assert records["b/padded_after_end.jpg"]["image/reencoded"] == [0]
    assert "b/cut_and_padded.jpg" not in records
    rejected = (out / "rejected.jsonl").read_text()
    assert "b/cut_and_padded.jpg" in rejected and "truncated" in rejected
    assert tfrecord_tools.verify(out).ok
    assert sum(len(labels) for _, labels in tfrecord_tools.load(out, "train", batch_size=4, image_size=(8, 8))) == 9


# N1
def test_a_cut_photo_is_checked_strictly_whatever_its_header_holds():
    photo = photo_bytes(size=(800, 600))
    cut = photo[: len(photo) * 6 // 10] + b"\xff\xd9"  # cut at 60%, end marker put back: 280 rows lost
    start_of_frame = cut.index(b"\xff\xc0")
    stray = cut[:start_of_frame] + b"\x00" + cut[start_of_frame:]  # the header walk fails on this byte
    for data in (cut, stray):
        with pytest.raises(encode.ImageCheckError) as caught:
            encode.check_image(data)
        assert caught.value.category == "corrupt" and "libjpeg says" in caught.value.reason
    assert "extraneous bytes before marker 0xc0" in str(pytest.raises(encode.ImageCheckError, encode.check_image,
                                                                      stray).value)
    rng = random.Random(0)
    start_of_scan = cut.index(b"\xff\xda")
    accepted = []
    for attempt in range(80):  # one header byte set, or inserted
        position, byte = rng.randrange(2, start_of_scan), bytes([rng.randrange(256)])
        damaged = cut[:position] + byte + cut[position + attempt % 2:]
        try:
            encode.check_image(damaged)
            accepted.append((position, byte, attempt % 2))
        except encode.ImageCheckError:
            pass
    assert accepted == []


@pytest.fixture(scope="module")
def arithmetic_photos():
    """Arithmetic-coded JPEGs (SOF9) of a smooth colour picture: 256x256 (over 64 KiB) and 128x128."""
    photos = {}
    for side in (256, 128):
        rng = np.random.default_rng(side)
        coarse = rng.integers(0, 256, (side // 2 + 1, side // 2 + 1, 3), dtype=np.uint8)
        pixels = np.asarray(Image.fromarray(coarse).resize((side, side), Image.Resampling.BICUBIC))
        photos[side] = (pixels, arithmetic_jpeg(pixels))
    return photos


# N2
def test_a_valid_arithmetic_jpeg_over_64_kib_is_stored(arithmetic_photos, tmp_path):
    _, data = arithmetic_photos[256]
    assert len(data) > 64 * 1024 and not pillow_decodes(data)  # Pillow's reader fails on it: it was rejected
    write_file(tmp_path / "src" / "a" / "arithmetic.jpg", data)
    write_file(tmp_path / "src" / "a" / "baseline.jpg", image_bytes(seed=1))
    write_records(tmp_path / "src", tmp_path / "out", test_fraction=0)
    record = by_filename(tmp_path / "out")["a/arithmetic.jpg"]
    assert record["image/reencoded"] == [1]  # some libjpeg builds cannot read arithmetic coding
    stored = np.asarray(Image.open(io.BytesIO(record["image/encoded"][0])), dtype=np.int16)
    assert np.abs(stored - simplejpeg.decode_jpeg(data)).mean() < 2  # what libjpeg and TensorFlow show
    assert tfrecord_tools.verify(tmp_path / "out").ok


# N2
def test_a_damaged_arithmetic_jpeg_is_rejected(arithmetic_photos):
    for side in (256, 128):
        _, data = arithmetic_photos[side]
        middle = len(data) // 2
        zeroed = data[:middle] + b"\x00" * 4096 + data[middle + 4096 :]
        with pytest.raises(encode.ImageCheckError) as caught:
            encode.check_image(zeroed)
        assert caught.value.category == "corrupt" and "libjpeg says" in caught.value.reason


# N2
def test_every_jpeg_path_decodes_strictly_and_never_with_pillow(arithmetic_photos, monkeypatch):
    """Dispatch: whatever the JPEG (coding, colour, marker, orientation, resize), libjpeg decodes it strictly."""
    calls = []
    strict_decode = encode.simplejpeg.decode_jpeg

    def recorded(*arguments, **keywords):
        calls.append(keywords.get("strict"))
        return strict_decode(*arguments, **keywords)

    def no_pillow_decode(image):
        raise AssertionError("Pillow decoded a JPEG")

    monkeypatch.setattr(encode.simplejpeg, "decode_jpeg", recorded)
    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "load", no_pillow_decode)
    jpegs = [image_bytes(size=(40, 30)), image_bytes(size=(40, 30), mode="L"), image_bytes(mode="CMYK"),
             image_bytes(size=(40, 30), progressive=True), arithmetic_photos[128][1], jpeg_without_end_marker(),
             rotated_jpeg()]
    for data in jpegs:
        encode.check_image(data, apply_orientation=True)
        encode.stored_jpeg_bytes(data, apply_orientation=True)
        encode.stored_jpeg_bytes(data, max_side=8)
    assert calls and set(calls) == {True}


# N6
@pytest.mark.parametrize("mode", ["RGB", "L", "I;16"])
def test_a_png_colour_key_is_composited_over_white(mode):
    key = {"RGB": (0, 0, 0), "L": 0, "I;16": 0}[mode]
    pixels = np.zeros((8, 8, 3) if mode == "RGB" else (8, 8), dtype=np.uint16 if mode == "I;16" else np.uint8)
    pixels[:, 4:] = 30000 if mode == "I;16" else 100  # the right half is opaque, the left half transparent
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", transparency=key)  # a tRNS chunk, as optipng writes
    stored = np.asarray(Image.open(io.BytesIO(encode.stored_jpeg_bytes(buffer.getvalue()))), dtype=np.int16)
    assert stored[:, :3].min() > 245  # white where transparent, as a viewer shows it (not black)
    assert np.abs(stored[:, 5:] - (117 if mode == "I;16" else 100)).max() < 8


# N7
def test_re_encodings_keep_full_colour_resolution_and_resized_photos_half():
    rng = np.random.default_rng(7)
    coarse = rng.integers(0, 256, (9, 9, 3), dtype=np.uint8)
    smooth = Image.fromarray(coarse).resize((96, 96), Image.Resampling.BICUBIC)
    dithered = smooth.quantize(colors=16, dither=Image.Dither.FLOYDSTEINBERG)
    buffer = io.BytesIO()
    dithered.save(buffer, format="GIF")
    stored = Image.open(io.BytesIO(encode.stored_jpeg_bytes(buffer.getvalue())))
    assert JpegImagePlugin.get_sampling(stored) == 0  # 4:4:4
    error = np.abs(np.asarray(stored, dtype=np.int16) - np.asarray(dithered.convert("RGB"), dtype=np.int16))
    assert error.mean() < 4  # 2.8 levels off; at 4:2:0, 5.9
    resized = Image.open(io.BytesIO(encode.stored_jpeg_bytes(photo_bytes(size=(400, 300)), max_side=100)))
    assert resized.size == (100, 75) and JpegImagePlugin.get_sampling(resized) == 2  # 4:2:0: decodes faster
