"""Decode-check an image's bytes (every JPEG strictly) and make the JPEG bytes to store for it.

Every decision here is made from the file's content, never from its name: a PNG
called ``photo.jpg`` is a PNG. The rules, in the order :func:`check_image` applies
them:

1. Empty file, or content that starts with no known image signature: rejected.
2. The pixel count is checked against ``max_pixels`` from the header, *before*
   decoding (a 100,000 x 100,000 PNG would need 30 GB), then every pixel is
   decoded; any decoder error rejects the file.
3. Every JPEG, whatever its coding (baseline, progressive, arithmetic, CMYK, ...),
   is decoded strictly by libjpeg-turbo (simplejpeg with ``strict=True``): the
   warnings that libjpeg prints and Pillow and ``tf.io.decode_jpeg`` ignore
   ("Corrupt JPEG data: premature end of data segment", "extraneous bytes before
   marker") reject the file, as ``djpeg -strict`` would. Such files decode, but
   with grey or smeared rows. A JPEG is rejected only when that decode fails.
   JPEG carries no checksum, so no decoder notices every changed byte. PNG files
   must have a correct CRC in every chunk (Pillow does not check the image data's).
4. A JPEG whose pixels are RGB or grayscale, Huffman-coded with 8-bit samples,
   and whose end-of-image marker (FF D9) follows its last scan, is kept byte for
   byte. Anything else (PNG, GIF's first frame, BMP, WebP, TIFF, CMYK or
   arithmetic-coded JPEG, alpha, 16-bit, and a JPEG that lacks the marker, which
   ``tf.io.decode_jpeg`` refuses as "Invalid JPEG data") is re-encoded to an RGB
   JPEG by :func:`to_rgb_jpeg`, so the stored ``image/format`` is always ``jpeg``,
   ``image/channels`` is 1 or 3, and every stored image decodes with
   ``tf.io.decode_jpeg``. Transparency (an alpha channel, or a PNG's colour key)
   is composited over white.
5. An image that must be re-encoded but has a side over 65,500 px (the largest
   JPEG libjpeg writes) is rejected as ``too_large``.

Re-encodings keep full colour resolution (4:4:4 chroma): at 4:2:0 a dithered GIF
came back twice as far from its pixels. Images that ``max_side`` resizes are
photos in the common case, whose source is 4:2:0 already; they stay 4:2:0, which
``tf.io.decode_jpeg`` decodes in about 3/4 of the CPU time (300 px photos).

By default EXIF orientation is not applied, as neither ``tf.io.decode_jpeg`` nor
Keras's image loaders apply it: the stored pixels are the ones training will see.
``apply_orientation=True`` (``--apply-exif-orientation``) turns images upright
(re-encoding those that need it); the orientation tag is read from the file's
bytes, as the strict decoder gives pixels only. ICC colour profiles are not kept
in re-encodings: TensorFlow ignores them when decoding.

With ``max_side`` (``--max-side``), images whose longer side is over it are
stored resized (aspect ratio kept, Pillow's Lanczos filter after a reduction by
whole factors at least 2x above the target, as ``Image.thumbnail`` does; JPEGs
are decoded at 1/2, 1/4 or 1/8 scale while that stays at least twice the
target), as JPEG at ``jpeg_quality``.
"""

import hashlib
import io
import struct
import zlib

from PIL import Image, ImageFile

from .jpeg_markers import HUFFMAN_SOF_MARKERS, frame_header, jpeg_ends_properly
from .sniff import PILLOW_FORMAT, describe_unknown, sniff_format

try:  # libjpeg-turbo with its warnings made errors: every JPEG is checked with it
    import simplejpeg
except ImportError:  # pragma: no cover - exercised only where the wheel is missing
    raise ImportError("tfrecord_tools checks every JPEG with simplejpeg (libjpeg-turbo), which is not installed: "
                      "python -m pip install simplejpeg") from None

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
#: Chroma subsampling of re-encodings (Pillow's ``subsampling``): 4:4:4, and 4:2:0 for resized images.
FULL_CHROMA, HALF_CHROMA = 0, 2

class ImageCheckError(ValueError):
    """The file is not a usable image; ``category`` groups reasons for the summary."""

    def __init__(self, reason, category):
        super().__init__(reason)
        self.reason = reason
        self.category = category


#: libjpeg's colour space (simplejpeg's header) -> what the strict decoder outputs and Pillow's mode of it.
_JPEG_OUTPUT = {"Gray": ("GRAY", "L"), "RGB": ("RGB", "RGB"), "YCbCr": ("RGB", "RGB"), "CMYK": ("CMYK", "CMYK"),
                "YCCK": ("CMYK", "CMYK")}


def _refuse_over_limit(width, height, max_pixels):
    if width * height > max_pixels:
        raise ImageCheckError(
            f"image is {width}x{height} = {width * height / 1e6:.0f} MP, over the limit of "
            f"{max_pixels / 1e6:.0f} MP (raise max_pixels to accept it)",
            "too_large",
        )


def _jpeg_header(data):
    """``(height, width, colorspace)`` as libjpeg reads the header; a header it cannot read rejects the file."""
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError as error:
        cut = "" if jpeg_ends_properly(data) else " (the file is truncated or damaged: it has no end-of-image marker)"
        raise ImageCheckError(f"jpeg header cannot be read{cut}: libjpeg says '{_libjpeg_message(error)}'",
                              "corrupt") from None
    if not height or not width:
        raise ImageCheckError(f"jpeg declares an empty size {width}x{height}", "corrupt")
    if colorspace not in _JPEG_OUTPUT:
        raise ImageCheckError(f"jpeg has the colour space {colorspace!r}, which libjpeg cannot convert to RGB",
                              "corrupt")
    return height, width, colorspace


def _libjpeg_message(error):
    return str(error).strip().rstrip(".")


def _strict_jpeg_pixels(data, colorspace, min_size=None):
    """Decode with libjpeg-turbo, every warning an error (simplejpeg ``strict=True``).

    Parameters
    ----------
    data : bytes
        The whole JPEG file.
    colorspace : str
        libjpeg's colour space of the file (from :func:`_jpeg_header`).
    min_size : (int, int), optional
        ``(width, height)``: decode at the smallest of 1/2, 1/4 or 1/8 scale (DCT
        scaling) that is at least this large.

    Returns
    -------
    numpy.ndarray, shape (H, W, C), uint8
        C is 1 (grayscale), 3 (RGB) or 4 (CMYK, as stored: Adobe's inverted values).
    """
    # A JPEG whose only fault is a missing end-of-image marker has all its pixels: it is
    # accepted (and re-encoded, see keeps_original_bytes), so give libjpeg the marker.
    # Zero bytes in its place are no pixels (a file cut short, then padded): they go.
    ends = jpeg_ends_properly(data)
    candidate = data
    if not ends:
        candidate = data.rstrip(b"\x00")
        if candidate.endswith(b"\xff"):
            candidate += b"\x00"  # a stuffed FF 00 at the end of the scan data
        candidate += b"\xff\xd9"
    scale = {} if min_size is None else {"min_width": min_size[0], "min_height": min_size[1]}
    try:
        return simplejpeg.decode_jpeg(candidate, colorspace=_JPEG_OUTPUT[colorspace][0], strict=True, **scale)
    except ValueError as error:
        what = "damaged" if ends else "truncated or damaged (it has no end-of-image marker)"
        raise ImageCheckError(
            f"jpeg data is {what}: libjpeg says '{_libjpeg_message(error)}' (other decoders show such files with "
            "grey or smeared rows)", "corrupt",
        ) from None


def _decode_jpeg(data, max_pixels, min_size=None):
    """A JPEG's pixels as a Pillow image (L, RGB or CMYK), decoded strictly (see :func:`_strict_jpeg_pixels`)."""
    height, width, colorspace = _jpeg_header(data)
    _refuse_over_limit(width, height, max_pixels)
    pixels = _strict_jpeg_pixels(data, colorspace, min_size)
    mode = _JPEG_OUTPUT[colorspace][1]
    if mode == "CMYK":  # Adobe's inverted CMYK, as Pillow reads it ("CMYK;I")
        return Image.frombytes("CMYK", (pixels.shape[1], pixels.shape[0]), pixels.tobytes(), "raw", "CMYK;I")
    return Image.fromarray(pixels[:, :, 0] if mode == "L" else pixels, mode=mode)


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
        The decoded first frame and the sniffed format name. A JPEG's image holds
        its pixels only (no EXIF: see :func:`exif_orientation`).

    Raises
    ------
    ImageCheckError
        With a reason that names what was found and what was expected.
    """
    if not data:
        raise ImageCheckError("empty file (0 bytes)", "empty")
    source_format = sniff_format(data[:16])
    if source_format is None:
        raise ImageCheckError(describe_unknown(data[:64]), "not_an_image")
    if source_format == "jpeg":
        return _decode_jpeg(data, max_pixels), source_format
    if source_format == "png":
        _check_png_crcs(data)
    try:
        image = Image.open(io.BytesIO(data), formats=[PILLOW_FORMAT[source_format]])
    except Exception as error:  # Pillow raises many types for bad headers
        raise ImageCheckError(f"{source_format} header cannot be read: {error}", "corrupt") from None
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageCheckError(f"{source_format} declares an empty size {width}x{height}", "corrupt")
    _refuse_over_limit(width, height, max_pixels)
    if source_format == "tiff":
        _refuse_previews(image, data)
    try:
        image.load()  # decodes every pixel of the first frame; truncation raises here
    except Exception as error:
        raise ImageCheckError(f"{source_format} data cannot be decoded: {error}", "corrupt") from None
    return image, source_format


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
    """The EXIF orientation tag (1-8), or 1 when there is none or it cannot be read.

    ``image`` is the file opened by Pillow, to save opening it again; an image made
    from decoded pixels (the strict JPEG decoder's) carries no EXIF, so the tag is
    then read from ``data``.
    """
    try:
        if image is None or getattr(image, "format", None) is None:
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


def keeps_original_bytes(mode, source_format, data):
    """True when the file is a JPEG that every decoder reads as RGB or grayscale (``mode`` L or RGB).

    That is an 8-bit Huffman-coded JPEG (baseline, extended or progressive) with 1
    or 3 components that ends with its end-of-image marker (see
    :func:`jpeg_ends_properly`). Arithmetic-coded, lossless and 12-bit JPEGs,
    which some builds of libjpeg (and so tf.io.decode_jpeg) refuse, and JPEGs
    without the marker, which tf.io.decode_jpeg refuses, are re-encoded.
    """
    if source_format != "jpeg" or mode not in ("RGB", "L"):
        return False
    header = frame_header(data)
    return (header is not None and header[0] in HUFFMAN_SOF_MARKERS and header[1] == 8
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


_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def _to_8_bit_rgb(image):
    """Convert any Pillow mode to 8-bit RGB; transparency is composited over white.

    Transparency is an alpha channel, a palette's transparent entries, or a PNG's
    colour key (its tRNS chunk: every pixel of one value is transparent; optipng
    and oxipng write such files). Pillow's own ``convert("L")`` clips 16-bit values
    at 255 instead of scaling them, which turns most 16-bit photos white, so
    integer modes are scaled here.
    """
    key = image.info.get("transparency")
    if image.mode in _SIXTEEN_BIT_MODES:
        image = _scaled_to_8_bit(image, key if isinstance(key, int) and image.mode != "F" else None)
    elif image.mode == "P" or (key is not None and image.mode in ("1", "L", "RGB")):
        image = image.convert("RGBA" if key is not None else "RGB")  # Pillow applies the colour key here
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB") if image.mode != "RGB" else image


def _scaled_to_8_bit(image, transparent_value=None):
    """A 16-bit or 32-bit grayscale image scaled to 8 bits (mode L, or LA with a colour key)."""
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
    gray = Image.fromarray(scaled, mode="L")
    if transparent_value is None:
        return gray
    alpha = np.where(pixels == transparent_value, 0, 255).astype(np.uint8)
    return Image.merge("LA", (gray, Image.fromarray(alpha, mode="L")))


def to_rgb_jpeg(image, quality=REENCODE_JPEG_QUALITY, size=None, subsampling=FULL_CHROMA):
    """Encode a decoded Pillow image as an RGB JPEG.

    Parameters
    ----------
    image : PIL.Image.Image
        Any mode: RGB, L, P, RGBA, LA, CMYK, I;16, ...
    quality : int
        JPEG quality, 1-95.
    size : (int, int), optional
        ``(width, height)`` to resize to first (Lanczos, ``reducing_gap=2.0``).
    subsampling : int
        :data:`FULL_CHROMA` (4:4:4) or :data:`HALF_CHROMA` (4:2:0).

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
    rgb.save(buffer, format="JPEG", quality=quality, subsampling=subsampling)
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
    if sniff_format(data[:16]) == "jpeg":
        # The common case: libjpeg's pixels are checked, no Pillow image is made of them.
        height, width, colorspace = _jpeg_header(data)
        _refuse_over_limit(width, height, max_pixels)
        _strict_jpeg_pixels(data, colorspace)
        source_format, mode, frames, image = "jpeg", _JPEG_OUTPUT[colorspace][1], 1, None
    else:
        image, source_format = open_checked(data, max_pixels)
        mode, width, height, frames = image.mode, image.width, image.height, frame_count(image)
    keep = keeps_original_bytes(mode, source_format, data)
    if apply_orientation and exif_orientation(data, image) > 1:
        keep = False
        if exif_orientation(data, image) in (5, 6, 7, 8):  # turned by 90 degrees
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


def stored_jpeg_bytes(data, max_pixels=DEFAULT_MAX_PIXELS, max_side=None, apply_orientation=False,
                      jpeg_quality=RESIZE_JPEG_QUALITY, reencode_quality=REENCODE_JPEG_QUALITY):
    """The bytes to store for a source file: itself, or its RGB JPEG re-encoding (maybe resized).

    ``jpeg_quality`` is the quality of resized images, ``reencode_quality`` that of the
    other re-encodings (PNG, GIF, ..., and photos turned upright).
    """
    source_format = sniff_format(data[:16])
    if max_side is not None:
        resized = _resized_jpeg_bytes(data, source_format, max_pixels, max_side, apply_orientation, jpeg_quality)
        if resized is not None:
            return resized
    image, source_format = open_checked(data, max_pixels)
    orientation = exif_orientation(data, image) if apply_orientation else 1
    if orientation > 1:
        return to_rgb_jpeg(upright(image, orientation), quality=reencode_quality)
    if keeps_original_bytes(image.mode, source_format, data):
        return data
    return to_rgb_jpeg(image, quality=reencode_quality)


def _resized_jpeg_bytes(data, source_format, max_pixels, max_side, apply_orientation, quality):
    """The resized JPEG of an image whose longer side is over ``max_side``, or None if it is not."""
    if source_format == "jpeg":
        height, width, _ = _jpeg_header(data)
        image = None
    else:
        image = Image.open(io.BytesIO(data), formats=[PILLOW_FORMAT[source_format]])
        width, height = image.size
    orientation = exif_orientation(data, image) if apply_orientation else 1
    upright_size = (width, height) if orientation < 5 else (height, width)
    size = stored_size(*upright_size, max_side)
    if size == upright_size:
        return None
    _refuse_over_limit(width, height, max_pixels)
    if image is None:
        # libjpeg decodes at 1/2, 1/4 or 1/8 scale while that stays at least twice the
        # target size (what Pillow's draft() and Image.thumbnail do with reducing_gap=2.0).
        target = size if orientation < 5 else size[::-1]
        image = _decode_jpeg(data, max_pixels, min_size=_draft_size((width, height), (target[0] * 2, target[1] * 2)))
    else:
        image.load()
    return to_rgb_jpeg(upright(image, orientation), quality=quality, size=size, subsampling=HALF_CHROMA)


def _draft_size(size, requested):
    """The size Pillow's ``draft`` decodes a JPEG of ``size`` at for a ``requested`` size: 1/1, 1/2, 1/4 or 1/8."""
    scale = min(size[0] // requested[0], size[1] // requested[1])
    factor = next((factor for factor in (8, 4, 2) if scale >= factor), 1)
    return (size[0] + factor - 1) // factor, (size[1] + factor - 1) // factor
