"""Walking a JPEG's markers: its frame header, and whether its end-of-image marker follows the last scan."""

from tfrecord_tools import jpeg_markers

from fakes import image_bytes


def test_a_jpeg_ends_properly_only_with_its_end_marker_after_the_last_scan():
    whole = image_bytes(size=(16, 12), seed=3)
    assert jpeg_markers.jpeg_ends_properly(whole)
    assert jpeg_markers.jpeg_ends_properly(whole + b"\x00" * 64)  # padding after the marker: TensorFlow reads it
    assert jpeg_markers.jpeg_ends_properly(image_bytes(size=(40, 30), seed=3, progressive=True) + b"trailer")
    assert not jpeg_markers.jpeg_ends_properly(whole[:-2])
    assert not jpeg_markers.jpeg_ends_properly(whole[:-2] + b"\x00" * 64)  # zeros in place of the marker
    assert not jpeg_markers.jpeg_ends_properly(whole[:-1])


def test_the_frame_header_is_read_from_the_markers():
    progressive = image_bytes(size=(40, 30), seed=3, progressive=True)
    assert jpeg_markers.frame_header(progressive) == (0xC2, 8, 30, 40, 3)
    assert jpeg_markers.frame_header(image_bytes(size=(5, 7), mode="L")) == (0xC0, 8, 7, 5, 1)
    start_of_frame = progressive.index(b"\xff\xc2")
    stray = progressive[:start_of_frame] + b"\x00" + progressive[start_of_frame:]
    assert jpeg_markers.frame_header(stray) is None  # the walk stops: such a file is re-encoded, never kept
