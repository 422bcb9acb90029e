"""Sniffing: a file's format from its first bytes, and words (never bytes) for a file that is no image."""

import pytest

import tfrecord_tools

from fakes import image_bytes, rejected_lines, write_file, write_records


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


# N12
def test_a_file_that_is_no_image_is_described_without_quoting_its_bytes(source, tmp_path):
    write_file(source / "cat" / "notes.jpg", b"password=hunter2\nthe cat photos are from Anna\n")
    write_file(source / "cat" / "IMG_0001.HEIC", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64))
    write_file(source / "dog" / "scan.jpg", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj")
    write_file(source / "dog" / "blob.jpg", bytes(range(200, 256)) * 2)
    write_records(source, tmp_path / "out")
    rejected = rejected_lines(tmp_path / "out")
    assert rejected["cat/notes.jpg"]["reason"] == ("not an image: content looks like text (expected one of "
                                                  f"{', '.join(tfrecord_tools.SUPPORTED_FORMATS)})")
    assert "a HEIC/HEIF photo (convert it to JPEG" in rejected["cat/IMG_0001.HEIC"]["reason"]
    assert "a PDF document" in rejected["dog/scan.jpg"]["reason"]
    assert "content looks like binary data" in rejected["dog/blob.jpg"]["reason"]
    text = (tmp_path / "out" / "rejected.jsonl").read_text()
    assert "hunter2" not in text and "password" not in text and "\\x" not in text
