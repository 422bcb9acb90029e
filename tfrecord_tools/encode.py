"""Sniff an image's format from its bytes, decode-check it, and make JPEG bytes.

Every decision here is made from the file's content, never from its name: a PNG
called ``photo.jpg`` is a PNG. The rules, in the order :func:`check_image` applies
them:

1. Empty file, or content that starts with no known image signature: rejected.
2. Pillow opens the file restricted to the sniffed format, checks the pixel count
   against ``max_pixels`` *before* decoding (a 100,000 x 100,000 PNG would need
   30 GB), then decodes every pixel. Any decoder error rejects the file, and so
   does a JPEG without an end-of-image marker that decodes only thanks to zero
   bytes at its end (a file cut short, then padded: the zeros would be decoded
   as pixels).
3. A JPEG whose pixels are RGB or grayscale, and whose end-of-image marker
   (FF D9) follows its last scan, is kept byte for byte. Anything else (PNG,
   GIF's first frame, BMP, WebP, TIFF, CMYK JPEG, alpha, 16-bit, and a JPEG that
   lacks the marker, which ``tf.io.decode_jpeg`` refuses as "Invalid JPEG data"
   though Pillow reads it) is re-encoded to an RGB JPEG by :func:`to_rgb_jpeg`,
   so the stored ``image/format`` is always ``jpeg``, ``image/channels`` is 1
   or 3, and every stored image decodes with ``tf.io.decode_jpeg``.
4. An image that must be re-encoded but has a side over 65,500 px (the largest
   JPEG libjpeg writes) is rejected as ``too_large``.

JPEG data is decoded strictly (simplejpeg's libjpeg-turbo binding with
``strict=True``): the warnings that libjpeg prints and Pillow and
``tf.io.decode_jpeg`` ignore ("Corrupt JPEG data: premature end of data segment",
"extraneous bytes before marker") reject the file, as ``djpeg -strict`` would.
Such files decode, but with grey or smeared rows. JPEG carries no checksum, so no
decoder notices every changed byte. PNG files must have a correct CRC in every
chunk (Pillow does not check the image data's).

By default EXIF orientation is not applied, as neither ``tf.io.decode_jpeg`` nor
Keras's image loaders apply it: the stored pixels are the ones training will see.
``apply_orientation=True`` (``--apply-exif-orientation``) turns images upright
(re-encoding those that need it). ICC colour profiles are not kept in
re-encodings: TensorFlow ignores them when decoding.

With ``max_side`` (``--max-side``), images whose longer side is over it are
stored resized (aspect ratio kept, Pillow's Lanczos filter after a reduction by
whole factors at least 2x above the target, as ``Image.thumbnail`` does), as
JPEG at ``jpeg_quality``.
"""

import hashlib
import io
import re
import struct
import warnings
import zlib

from PIL import Image, ImageFile

try:  # libjpeg-turbo with its warnings made errors; faster than Pillow's decoder too
    import simplejpeg
except ImportError:  # pragma: no cover - exercised only where the wheel is missing
    simplejpeg = None

# Pillow would silently accept a truncated file if this were True; we want the error.
ImageFile.LOAD_TRUNCATED_IMAGES = False
# We apply our own, clearer pixel limit before decoding (see check_image).
Image.MAX_IMAGE_PIXELS = None

#: Default upper limit on width * height. 100 MP is above any consumer camera.
DEFAULT_MAX_PIXELS = 100_000_000
#: Quality of re-encoded JPEGs: high enough that re-encoding loses little.
REENCODE_JPEG_QUALITY = 95
#: Largest width or height libjpeg (Pillow's and TensorFlow's) encodes or decodes.
MAX_JPEG_SIDE = 65_500
#: Quality of the JPEGs that ``max_side`` resizes (``--jpeg-quality``).
RESIZE_JPEG_QUALITY = 90
#: How resized images are made, as recorded in ``dataset.json``.
RESIZE_FILTER = "Pillow LANCZOS, reducing_gap 2.0 (JPEG draft decoding, then reduce(), then Lanczos)"
#: True when JPEG data is checked strictly (simplejpeg is installed).
STRICT_JPEG = simplejpeg is not None
_warned_lenient = False

# (signature test, format name, Pillow's format id)
_SIGNATURES = (
    (lambda head: head.startswith(b"\xff\xd8\xff"), "jpeg", "JPEG"),
    (lambda head: head.startswith(b"\x89PNG\r\n\x1a\n"), "png", "PNG"),
    (lambda head: head[:6] in (b"GIF87a", b"GIF89a"), "gif", "GIF"),
    (lambda head: head.startswith(b"BM"), "bmp", "BMP"),
    (lambda head: head[:4] == b"RIFF" and head[8:12] == b"WEBP", "webp", "WEBP"),
    (lambda head: head[:4] in (b"II*\x00", b"MM\x00*"), "tiff", "TIFF"),
)
SUPPORTED_FORMATS = tuple(name for _, name, _ in _SIGNATURES)
_PILLOW_FORMAT = {name: pillow for _, name, pillow in _SIGNATURES}


class ImageCheckError(ValueError):
    """The file is not a usable image; ``category`` groups reasons for the summary."""

    def __init__(self, reason, category):
        super().__init__(reason)
        self.reason = reason
        self.category = category


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


def _describe_unknown(head):
    """A short, readable description of content that is not an image."""
    if not head:
        return "empty file (0 bytes)"
    printable = sum(32 <= byte < 127 or byte in (9, 10, 13) for byte in head[:64])
    kind = "text" if printable >= 0.95 * min(len(head), 64) else "data"
    return (
        f"not an image: content looks like {kind} and starts with {head[:16]!r} "
        f"(expected one of {', '.join(SUPPORTED_FORMATS)})"
    )


# Start-of-frame markers of the JPEG processes Pillow/libjpeg decode with 8-bit
# samples in the common case: baseline (C0), extended (C1), progressive (C2).
_FAST_SOF_MARKERS = (0xC0, 0xC1, 0xC2)
_ALL_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _common_jpeg_header(data: bytes) -> tuple[int, int, int] | None:
    """``(height, width, components)`` of an 8-bit baseline or progressive JPEG with 1 or 3 components, else None."""
    header = _jpeg_frame_header(data)
    if header is None:
        return None
    marker, precision, height, width, components = header
    if marker not in _FAST_SOF_MARKERS or precision != 8 or components not in (1, 3) or not height or not width:
        return None
    return height, width, components


def _jpeg_frame_header(data):
    """``(marker, precision, height, width, components)`` from a JPEG's SOF segment, or None.

    Walks the marker segments from the start (each announces its own length)
    up to the first start-of-frame; returns None for anything unexpected, and
    the caller then takes Pillow's full path.
    """
    position = 2
    end = len(data)
    while position + 4 <= end:
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        length = (data[position + 2] << 8) | data[position + 3]
        if marker in _ALL_SOF_MARKERS:
            if position + 10 > end:
                return None
            precision = data[position + 4]
            height = (data[position + 5] << 8) | data[position + 6]
            width = (data[position + 7] << 8) | data[position + 8]
            return marker, precision, height, width, data[position + 9]
        if marker == 0xDA or length < 2:  # start of scan before any frame header: malformed
            return None
        position += 2 + length
    return None


# After a scan, the next marker: FF followed by anything but 00 (a stuffed FF data
# byte), D0-D7 (restart markers, part of the scan) or FF (fill bytes before a marker).
_MARKER_AFTER_SCAN = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
# Markers without a length field: TEM, RST0-7, SOI.
_MARKERS_WITHOUT_LENGTH = frozenset({0x01, 0xD8, *range(0xD0, 0xD8)})


def jpeg_ends_properly(data):
    """True when an end-of-image marker (FF D9) follows the JPEG's last scan.

    ``tf.io.decode_jpeg`` reads to that marker and fails with "Invalid JPEG data"
    when the file ends before it, even if every pixel is there, and even when
    zero bytes take its place; Pillow decodes such files. Bytes after the marker
    are ignored by both (tried: zero padding, text, more FF bytes), so they are
    allowed.

    Walks the marker segments (each announces its length) and, after each
    start-of-scan, the entropy-coded data up to the next marker.
    """
    if data.endswith(b"\xff\xd9"):
        # Inside scan data an FF byte is always followed by 00 or a restart marker,
        # so a file that ends in FF D9 ends with its end-of-image marker.
        return True
    position, end, scans = 2, len(data), 0
    while position + 2 <= end:
        if data[position] != 0xFF:
            return False
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker == 0xD9:
            return scans > 0
        if marker in _MARKERS_WITHOUT_LENGTH:
            position += 2
            continue
        if position + 4 > end:
            return False
        length = (data[position + 2] << 8) | data[position + 3]
        if length < 2:
            return False
        position += 2 + length
        if marker == 0xDA:  # start of scan: skip its entropy-coded data
            scans += 1
            found = _MARKER_AFTER_SCAN.search(data, position)
            if found is None:
                return False
            position = found.start()
    return False


def _open_common_jpeg(data, max_pixels, strict=True):
    """Decode an 8-bit, 1- or 3-component JPEG without Pillow's Python header parser.

    For a 32x32 CIFAR image Pillow spends ~4x longer parsing markers in Python
    than libjpeg spends decoding; this path reads only the frame header and
    hands the whole file to the same libjpeg decoder (``Image.frombytes`` with
    the ``"jpeg"`` decoder, as ``JpegImagePlugin`` does). Returns None when the
    file is anything else, so :func:`open_checked` takes the full path.
    """
    header = _common_jpeg_header(data)
    if header is None:
        return None
    height, width, components = header
    if width * height > max_pixels:
        raise ImageCheckError(
            f"image is {width}x{height} = {width * height / 1e6:.0f} MP, over the limit of "
            f"{max_pixels / 1e6:.0f} MP (raise max_pixels to accept it)",
            "too_large",
        )
    mode = "L" if components == 1 else "RGB"
    if simplejpeg is not None and strict:
        pixels = _strict_jpeg_pixels(data, "GRAY" if components == 1 else "RGB")
        return Image.fromarray(pixels[:, :, 0] if components == 1 else pixels, mode=mode)
    if strict:
        _warn_lenient()
    try:
        return Image.frombytes(mode, (width, height), data, "jpeg", mode, "")
    except (ValueError, OSError) as error:
        message = "file is truncated" if "not enough image data" in str(error) else str(error)
        raise ImageCheckError(f"jpeg data cannot be decoded: {message}", "corrupt") from None


def _warn_lenient():
    global _warned_lenient
    if not _warned_lenient:
        warnings.warn("simplejpeg is not installed: JPEGs are checked with Pillow, which accepts damaged "
                      "entropy data. Install it with: pip install simplejpeg", stacklevel=3)
        _warned_lenient = True


def _strict_jpeg_pixels(data, colorspace):
    """Decode with libjpeg-turbo, every warning an error (simplejpeg ``strict=True``)."""
    # A JPEG whose only fault is a missing end-of-image marker has all its pixels: it is
    # accepted (and re-encoded, see keeps_original_bytes), so give libjpeg the marker.
    ends = jpeg_ends_properly(data)
    candidate = data
    if not ends:
        # Zero bytes where the marker should be are checked apart (open_checked: are they read as pixels?).
        candidate = data.rstrip(b"\x00")
        if candidate.endswith(b"\xff"):
            candidate += b"\x00"  # a stuffed FF 00 at the end of the scan data
        candidate += b"\xff\xd9"
    try:
        return simplejpeg.decode_jpeg(candidate, colorspace=colorspace, strict=True)
    except ValueError as error:
        message = str(error).strip().rstrip(".")
        what = "damaged" if ends else "truncated or damaged (it has no end-of-image marker)"
        raise ImageCheckError(
            f"jpeg data is {what}: libjpeg says '{message}' (other decoders show such files with grey or "
            "smeared rows)", "corrupt",
        ) from None


def _check_png_crcs(data):
    """Every chunk's CRC must match (Pillow checks the header chunks, not the image data)."""
    position, end = 8, len(data)
    while position + 12 <= end:
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        stop = position + 12 + length
        if stop > end:
            return  # truncated: the decoder reports it
        (stored,) = struct.unpack(">I", data[stop - 4 : stop])
        if zlib.crc32(data[position + 4 : stop - 4]) != stored:
            name = kind.decode("latin-1")
            raise ImageCheckError(
                f"png data is damaged: the CRC of its {name} chunk at byte {position:,} does not match", "corrupt"
            )
        if kind == b"IEND":
            return
        position = stop


def open_checked(data, max_pixels=DEFAULT_MAX_PIXELS):
    """Sniff, size-check and fully decode an image.

    Parameters
    ----------
    data : bytes
        The whole file.
    max_pixels : int
        Reject images with more than this many pixels, before decoding them.

    Returns
    -------
    (PIL.Image.Image, str)
        The decoded first frame and the sniffed format name.

    Raises
    ------
    ImageCheckError
        With a reason that names what was found and what was expected.
    """
    if not data:
        raise ImageCheckError("empty file (0 bytes)", "empty")
    source_format = sniff_format(data[:16])
    if source_format is None:
        raise ImageCheckError(_describe_unknown(data[:64]), "not_an_image")
    image = _decode(data, source_format, max_pixels)
    if source_format == "jpeg" and data.endswith(b"\x00") and not jpeg_ends_properly(data):
        # Cut short, then padded with zeros (by a copy tool, a disk image)? libjpeg decodes
        # the zeros as pixels. Decode again with other filler bytes: the pixels change
        # only if the filler is read as image data.
        unpadded = data.rstrip(b"\x00")
        if unpadded.endswith(b"\xff"):
            unpadded += b"\x00"  # a stuffed FF 00 at the end of the scan data
        try:
            # Without the strict check: the filler itself makes libjpeg warn.
            lenient = _decode(data, source_format, max_pixels, strict=False)
            same = (_decode(unpadded.ljust(len(data), b"\x55"), source_format, max_pixels, strict=False).tobytes()
                    == lenient.tobytes())
        except ImageCheckError:
            same = False
        if not same:
            raise ImageCheckError(
                f"jpeg data cannot be decoded: file is truncated (it ends in {len(data) - len(unpadded):,} zero "
                "bytes instead of its end-of-image marker FF D9, and the decoder reads them as pixels)",
                "corrupt",
            )
    return image, source_format


def _decode(data, source_format, max_pixels, strict=True):
    """Fully decode the first frame (see :func:`open_checked`)."""
    if source_format == "jpeg":
        image = _open_common_jpeg(data, max_pixels, strict)
        if image is not None:
            return image
        header = _jpeg_frame_header(data)
        if (strict and simplejpeg is not None and header is not None and header[0] in _FAST_SOF_MARKERS
                and header[1] == 8 and header[4] == 4 and header[2] * header[3] <= max_pixels):
            _strict_jpeg_pixels(data, "CMYK")  # the strict check; Pillow makes the image below
    elif source_format == "png":
        _check_png_crcs(data)
    try:
        image = Image.open(io.BytesIO(data), formats=[_PILLOW_FORMAT[source_format]])
    except Exception as error:  # Pillow raises many types for bad headers
        raise ImageCheckError(f"{source_format} header cannot be read: {error}", "corrupt") from None
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageCheckError(f"{source_format} declares an empty size {width}x{height}", "corrupt")
    if width * height > max_pixels:
        raise ImageCheckError(
            f"image is {width}x{height} = {width * height / 1e6:.0f} MP, over the limit of "
            f"{max_pixels / 1e6:.0f} MP (raise max_pixels to accept it)",
            "too_large",
        )
    if source_format == "tiff":
        _refuse_previews(image, data)
    try:
        image.load()  # decodes every pixel of the first frame; truncation raises here
    except Exception as error:
        raise ImageCheckError(f"{source_format} data cannot be decoded: {error}", "corrupt") from None
    return image


def _refuse_previews(image, data):
    """A camera RAW file opens as a TIFF whose first image is its small preview: refuse it."""
    tags = getattr(image, "tag_v2", {})
    raw = data[8:10] == b"CR" or 50706 in tags  # Canon CR2 signature, DNGVersion tag
    if raw or int(tags.get(254, 0) or 0) & 1:  # NewSubfileType: "reduced-resolution version of another image"
        what = "a camera RAW file" if raw else "a TIFF whose first image is a reduced-resolution preview"
        raise ImageCheckError(
            f"{what}: only its {image.width}x{image.height} preview could be stored, not the photo; convert the "
            "file to JPEG or PNG first", "preview_only",
        )


def frame_count(image):
    """Frames or pages in the file (animated GIF, WebP or PNG, multi-page TIFF); only the first is stored."""
    try:
        return int(getattr(image, "n_frames", 1) or 1)
    except Exception:  # a damaged later frame: the first one decoded, which is what is stored
        return 1


def exif_orientation(data, image=None):
    """The EXIF orientation tag (1-8), or 1 when there is none or it cannot be read."""
    try:
        if image is None or not hasattr(image, "getexif"):
            image = Image.open(io.BytesIO(data))
        value = image.getexif().get(0x0112, 1)
        return value if isinstance(value, int) and 1 <= value <= 8 else 1
    except Exception:  # damaged EXIF: treated as upright, as every decoder does
        return 1


#: EXIF orientation -> the transpose that turns the stored pixels upright.
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}


def upright(image, orientation):
    """``image`` turned as the EXIF ``orientation`` (1-8) says; 1 leaves it as it is."""
    return image.transpose(_UPRIGHT[orientation]) if orientation in _UPRIGHT else image


def stored_size(width, height, max_side=None):
    """``(width, height)`` after ``max_side``: the longer side scaled to it, aspect kept; never enlarged."""
    longer = max(width, height)
    if max_side is None or longer <= max_side:
        return width, height
    scale = max_side / longer
    if width >= height:
        return max_side, max(1, round(height * scale))
    return max(1, round(width * scale)), max_side


def keeps_original_bytes(image, source_format, data):
    """True when the file is a JPEG that every decoder reads as RGB or grayscale.

    That is an 8-bit Huffman-coded JPEG (baseline, extended or progressive) with 1
    or 3 components that ends with its end-of-image marker (see
    :func:`jpeg_ends_properly`). Arithmetic-coded, lossless and 12-bit JPEGs,
    which some builds of libjpeg (and so tf.io.decode_jpeg) refuse, and JPEGs
    without the marker, which tf.io.decode_jpeg refuses, are re-encoded.
    """
    if source_format != "jpeg" or image.mode not in ("RGB", "L"):
        return False
    header = _jpeg_frame_header(data)
    return (header is not None and header[0] in _FAST_SOF_MARKERS and header[1] == 8
            and jpeg_ends_properly(data))


def _check_jpeg_side(size, source_format):
    """Refuse to re-encode an image with a side JPEG cannot hold; ``size`` is (width, height)."""
    width, height = size
    if max(width, height) > MAX_JPEG_SIDE:
        raise ImageCheckError(
            f"image is {width}x{height} pixels: this {source_format} must be re-encoded to JPEG, and JPEG holds "
            f"at most {MAX_JPEG_SIDE:,} px a side (resize or cut it to store it)",
            "too_large",
        )


def _to_8_bit_rgb(image):
    """Convert any Pillow mode to 8-bit RGB; alpha is composited over white.

    Pillow's own ``convert("L")`` clips 16-bit values at 255 instead of scaling
    them, which turns most 16-bit photos white, so integer modes are scaled here.
    """
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        import numpy as np  # only needed for these rare modes

        pixels = np.asarray(image)
        brightest = float(pixels.max(initial=0))
        if image.mode == "F":  # floats: either 0..1 or an arbitrary range
            top = 1.0 if brightest <= 1.0 else brightest
        elif image.mode.startswith("I;16") or brightest > 255:
            top = 65535.0
        else:
            top = 255.0
        # Row blocks of about 4 MB in float32: a 100 MP 16-bit image needs its own 200 MB
        # and 100 MB for the result, not gigabytes of float64 temporaries.
        scaled = np.empty(pixels.shape, np.uint8)
        rows = max(1, 1_000_000 // max(1, pixels.shape[1]))
        for start in range(0, pixels.shape[0], rows):
            block = pixels[start : start + rows].astype(np.float32)
            block *= np.float32(255.0 / top)
            np.rint(block, out=block)
            np.clip(block, 0, 255, out=block)
            scaled[start : start + rows] = block
        del pixels
        image = Image.fromarray(scaled, mode="L")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB") if image.mode != "RGB" else image


def to_rgb_jpeg(image, quality=REENCODE_JPEG_QUALITY, size=None):
    """Encode a decoded Pillow image as an RGB JPEG.

    Parameters
    ----------
    image : PIL.Image.Image
        Any mode: RGB, L, P, RGBA, LA, CMYK, I;16, ...
    quality : int
        JPEG quality, 1-95.
    size : (int, int), optional
        ``(width, height)`` to resize to first (Lanczos, ``reducing_gap=2.0``).

    Returns
    -------
    bytes
        A baseline RGB JPEG. Pillow's encoder is deterministic, so the same input
        gives the same bytes.

    Raises
    ------
    ImageCheckError
        A side is over :data:`MAX_JPEG_SIDE` (category ``too_large``).
    """
    _check_jpeg_side(size or image.size, "image")
    rgb = _to_8_bit_rgb(image)
    if size is not None and tuple(size) != rgb.size:
        rgb = rgb.resize(tuple(size), Image.Resampling.LANCZOS, reducing_gap=2.0)
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def check_image(data, max_pixels=DEFAULT_MAX_PIXELS, max_side=None, apply_orientation=False):
    """Check one file's bytes and describe what will be stored for it.

    Parameters
    ----------
    data : bytes
        The whole file.
    max_pixels : int
        See :func:`open_checked`.
    max_side : int, optional
        Images whose longer side is over it are stored resized (see :func:`stored_size`).
    apply_orientation : bool
        Store images turned as their EXIF orientation says.

    Returns
    -------
    dict
        ``source_format``, ``mode`` (Pillow's), ``height``, ``width`` and
        ``channels`` (1 or 3) of the stored JPEG, ``reencode`` (bool: stored as an RGB JPEG
        re-encoding, see :func:`keeps_original_bytes`), ``sha256`` (hex, of
        ``data``), ``frames`` (frames or pages; only the first is stored) and
        ``resized`` (bool).

    Raises
    ------
    ImageCheckError
        The file is not a usable image.
    """
    checked = _check_common_jpeg(data, max_pixels)
    if checked is not None:  # the common case: no Pillow image needed
        mode, width, height, keep, frames = checked
        image = None
        source_format = "jpeg"
    else:
        image, source_format = open_checked(data, max_pixels)
        mode, width, height, frames = image.mode, image.width, image.height, frame_count(image)
        keep = keeps_original_bytes(image, source_format, data)
    if apply_orientation and exif_orientation(data, None if source_format == "jpeg" else image) > 1:
        keep = False
        if exif_orientation(data) in (5, 6, 7, 8):  # turned by 90 degrees
            width, height = height, width
    stored_width, stored_height = stored_size(width, height, max_side)
    resized = (stored_width, stored_height) != (width, height)
    if resized:
        keep = False
    if not keep:
        _check_jpeg_side((stored_width, stored_height), source_format)
    return {
        "source_format": source_format,
        "mode": mode,
        "height": stored_height,
        "width": stored_width,
        "channels": (1 if mode == "L" else 3) if keep else 3,
        "reencode": not keep,
        "sha256": hashlib.sha256(data).hexdigest(),
        "frames": frames,
        "resized": resized,
    }


def _check_common_jpeg(data, max_pixels):
    """``(mode, width, height, keep, frames)`` of an 8-bit 1- or 3-component JPEG, checked strictly.

    The same rules as :func:`open_checked` and :func:`keeps_original_bytes`, without
    making a Pillow image of the pixels (a copy that costs about 10% of a photo's
    check). None for anything else, and for the rare zero-padded file, which the
    full path handles.
    """
    if simplejpeg is None or sniff_format(data[:16]) != "jpeg":
        return None
    header = _common_jpeg_header(data)
    if header is None:
        return None
    height, width, components = header
    ends = jpeg_ends_properly(data)
    if not ends and data.endswith(b"\x00"):
        return None
    if width * height > max_pixels:
        raise ImageCheckError(
            f"image is {width}x{height} = {width * height / 1e6:.0f} MP, over the limit of "
            f"{max_pixels / 1e6:.0f} MP (raise max_pixels to accept it)",
            "too_large",
        )
    pixels = _strict_jpeg_pixels(data, "GRAY" if components == 1 else "RGB")
    if pixels.shape[:2] != (height, width):  # a frame header that lies about the size
        return None
    return ("L" if components == 1 else "RGB"), width, height, ends, 1


def stored_jpeg_bytes(data, max_pixels=DEFAULT_MAX_PIXELS, max_side=None, apply_orientation=False,
                      jpeg_quality=RESIZE_JPEG_QUALITY, reencode_quality=REENCODE_JPEG_QUALITY):
    """The bytes to store for a source file: itself, or its RGB JPEG re-encoding (maybe resized).

    ``jpeg_quality`` is the quality of resized images, ``reencode_quality`` that of the
    other re-encodings (PNG, GIF, ..., and photos turned upright).
    """
    if max_side is not None:
        resized = _resized_jpeg_bytes(data, max_pixels, max_side, apply_orientation, jpeg_quality)
        if resized is not None:
            return resized
    image, source_format = open_checked(data, max_pixels)
    orientation = exif_orientation(data, None if source_format == "jpeg" else image) if apply_orientation else 1
    if orientation > 1:
        return to_rgb_jpeg(upright(image, orientation), quality=reencode_quality)
    if keeps_original_bytes(image, source_format, data):
        return data
    return to_rgb_jpeg(image, quality=reencode_quality)


def _resized_jpeg_bytes(data, max_pixels, max_side, apply_orientation, quality):
    """The resized JPEG of an image whose longer side is over ``max_side``, or None if it is not."""
    source_format = sniff_format(data[:16])
    image = Image.open(io.BytesIO(data), formats=[_PILLOW_FORMAT[source_format]])
    orientation = exif_orientation(data, image) if apply_orientation else 1
    width, height = image.size if orientation < 5 else image.size[::-1]
    size = stored_size(width, height, max_side)
    if size == (width, height):
        return None
    if source_format == "jpeg" and image.mode in ("RGB", "L"):
        # Let libjpeg decode at 1/2, 1/4 or 1/8 scale while that stays at least twice
        # the target size (what Image.thumbnail does with reducing_gap=2.0).
        target = size if orientation < 5 else size[::-1]
        image.draft(image.mode, (target[0] * 2, target[1] * 2))
    if image.size[0] * image.size[1] > max_pixels:
        raise ImageCheckError(f"image is {image.size[0]}x{image.size[1]}, over the pixel limit", "too_large")
    image.load()
    return to_rgb_jpeg(upright(image, orientation), quality=quality, size=size)
