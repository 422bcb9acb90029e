"""Name a file's format from its first bytes, and say in words what a file that is no image seems to be."""

# (signature test, format name, Pillow's format id) of the formats we store
_SIGNATURES = (
    (lambda head: head.startswith(b"\xff\xd8\xff"), "jpeg", "JPEG"),
    (lambda head: head.startswith(b"\x89PNG\r\n\x1a\n"), "png", "PNG"),
    (lambda head: head[:6] in (b"GIF87a", b"GIF89a"), "gif", "GIF"),
    (lambda head: head.startswith(b"BM"), "bmp", "BMP"),
    (lambda head: head[:4] == b"RIFF" and head[8:12] == b"WEBP", "webp", "WEBP"),
    (lambda head: head[:4] in (b"II*\x00", b"MM\x00*"), "tiff", "TIFF"),
)
SUPPORTED_FORMATS = tuple(name for _, name, _ in _SIGNATURES)
#: Format name -> Pillow's format id, for ``Image.open(..., formats=[...])``.
PILLOW_FORMAT = {name: pillow for _, name, pillow in _SIGNATURES}

# Files that land in photo folders and are no image we store: (signature test, what it is).
_OTHER_CONTENT = (
    (lambda head: head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"hevc", b"mif1", b"msf1"),
     "a HEIC/HEIF photo (convert it to JPEG to store it)"),
    (lambda head: head[4:8] == b"ftyp" and head[8:12] in (b"avif", b"avis"), "an AVIF image (convert it to JPEG "
     "to store it)"),
    (lambda head: head[4:8] == b"ftyp" and head[8:11] == b"crx", "a Canon CR3 camera RAW file (convert it to JPEG "
     "to store it)"),
    (lambda head: head[4:8] == b"ftyp" and head[8:10] == b"qt", "a QuickTime video"),
    (lambda head: head[4:8] == b"ftyp", "an MP4 video"),
    (lambda head: head.startswith(b"\x1a\x45\xdf\xa3"), "a Matroska or WebM video"),
    (lambda head: head[:4] == b"RIFF" and head[8:12] == b"AVI ", "an AVI video"),
    (lambda head: head[:4] == b"RIFF" and head[8:12] == b"WAVE", "a WAV sound"),
    (lambda head: head.startswith(b"ID3") or head[:2] in (b"\xff\xfb", b"\xff\xf3"), "an MP3 sound"),
    (lambda head: head.startswith(b"%PDF"), "a PDF document"),
    (lambda head: head.startswith(b"PK\x03\x04"), "a ZIP archive (or an Office document)"),
    (lambda head: head.startswith(b"\x1f\x8b"), "gzip-compressed data"),
    (lambda head: head.startswith(b"8BPS"), "a Photoshop document (convert it to JPEG or PNG to store it)"),
    (lambda head: head.startswith(b"\x00\x00\x00\x0cjP  ") or head.startswith(b"\xff\x4f\xff\x51"),
     "a JPEG 2000 image (convert it to JPEG or PNG to store it)"),
    (lambda head: head.startswith(b"\x00\x00\x01\x00"), "a Windows icon (convert it to PNG to store it)"),
)


def sniff_format(head):
    """Name the image format from the first bytes of a file.

    Parameters
    ----------
    head : bytes
        At least the first 12 bytes of the file.

    Returns
    -------
    str or None
        One of :data:`SUPPORTED_FORMATS`, or None when no signature matches.
    """
    for matches, name, _ in _SIGNATURES:
        if matches(head):
            return name
    return None


def describe_unknown(head):
    """What content that is no image we store seems to be, in words, for ``rejected.jsonl``.

    A guess at the format only: the bytes themselves are never quoted (``rejected.jsonl``
    ships with the dataset, and a notes file may hold a password).

    Parameters
    ----------
    head : bytes
        The first 64 bytes of the file (fewer if it is shorter).
    """
    if not head:
        return "empty file (0 bytes)"
    kind = next((what for matches, what in _OTHER_CONTENT if matches(head)), None)
    if kind is None:
        printable = sum(32 <= byte < 127 or byte in (9, 10, 13) for byte in head[:64])
        kind = "text" if printable >= 0.95 * min(len(head), 64) else "binary data"
        kind = f"content looks like {kind}"
    else:
        kind = f"content is {kind}"
    return f"not an image: {kind} (expected one of {', '.join(SUPPORTED_FORMATS)})"
