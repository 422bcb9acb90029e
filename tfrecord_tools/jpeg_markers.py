"""Walk a JPEG's marker segments, without decoding: its frame header, and whether it ends as it should."""

import re

# Start-of-frame markers of the Huffman-coded processes with 8-bit samples that every
# libjpeg build decodes: baseline (C0), extended (C1), progressive (C2).
HUFFMAN_SOF_MARKERS = (0xC0, 0xC1, 0xC2)
_ALL_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# After a scan, the next marker: FF followed by anything but 00 (a stuffed FF data
# byte), D0-D7 (restart markers, part of the scan) or FF (fill bytes before a marker).
_MARKER_AFTER_SCAN = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
# Markers without a length field: TEM, RST0-7, SOI.
_MARKERS_WITHOUT_LENGTH = frozenset({0x01, 0xD8, *range(0xD0, 0xD8)})


def _markers(data):
    """Yield ``(position, marker)`` of a JPEG's markers after SOI, in order, up to the end-of-image marker.

    Each segment announces its length, and after a start-of-scan the entropy-coded
    data runs to the next marker. The walk stops at anything unexpected (a byte
    where a marker should be, a length that cannot be), so a damaged file yields
    fewer markers, never wrong ones.
    """
    position, end = 2, len(data)
    while position + 2 <= end:
        if data[position] != 0xFF:
            return
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        yield position, marker
        if marker == 0xD9:
            return
        if marker in _MARKERS_WITHOUT_LENGTH:
            position += 2
            continue
        if position + 4 > end:
            return
        length = (data[position + 2] << 8) | data[position + 3]
        if length < 2:
            return
        position += 2 + length
        if marker == 0xDA:  # start of scan: skip its entropy-coded data
            found = _MARKER_AFTER_SCAN.search(data, position)
            if found is None:
                return
            position = found.start()


def frame_header(data):
    """``(marker, precision, height, width, components)`` from a JPEG's SOF segment, or None.

    None when the markers before the first start-of-frame cannot be walked, or a
    scan comes first: the file is then re-encoded rather than kept as it is.
    """
    for position, marker in _markers(data):
        if marker in _ALL_SOF_MARKERS:
            if position + 10 > len(data):
                return None
            precision = data[position + 4]
            height = (data[position + 5] << 8) | data[position + 6]
            width = (data[position + 7] << 8) | data[position + 8]
            return marker, precision, height, width, data[position + 9]
        if marker == 0xDA:
            return None
    return None


def jpeg_ends_properly(data):
    """True when an end-of-image marker (FF D9) follows the JPEG's last scan.

    ``tf.io.decode_jpeg`` reads to that marker and fails with "Invalid JPEG data"
    when the file ends before it, even if every pixel is there, and even when
    zero bytes take its place; Pillow decodes such files. Bytes after the marker
    are ignored by both (tried: zero padding, text, more FF bytes), so they are
    allowed.
    """
    if data.endswith(b"\xff\xd9"):
        # Inside scan data an FF byte is always followed by 00 or a restart marker,
        # so a file that ends in FF D9 ends with its end-of-image marker.
        return True
    scans = 0
    for _, marker in _markers(data):
        if marker == 0xDA:
            scans += 1
        elif marker == 0xD9:
            return scans > 0
    return False
