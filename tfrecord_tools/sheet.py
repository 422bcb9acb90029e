"""Draw a contact sheet of a written dataset: a title, then one row of a few images per class.

The labels are drawn with a TrueType font that has their letters: DejaVu Sans
(matplotlib's copy, or the system's), then fonts with other scripts that common
systems have (Noto CJK, WenQuanYi, PingFang, Microsoft YaHei, ...; on Linux,
whatever fontconfig finds), then Pillow's own. A character that no font has is
written as its code point (``\\u732b``) rather than drawn as an empty box.
"""

import importlib.util
import io
import os
import shutil
import subprocess

from .errors import TFRecordToolsError, option_name, printable
from .record_io import RecordError, iter_file_records, parse_example_bytes
from .sidecar import CONTACT_SHEET_PATTERN, incomplete_path, read_sidecar

#: Largest contact sheet drawn, in pixels (about 300 MB of RGB): more would be no use on a screen.
MAX_SHEET_PIXELS = 100_000_000
#: The column of class labels and the band of the title, in pixels.
LABEL_WIDTH, TITLE_HEIGHT = 200, 36
#: Font sizes in pixels: readable on a screen whatever the cell size.
LABEL_FONT_PX, TITLE_FONT_PX = 15, 18
_SHEET_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
#: Written into every sheet's metadata (PNG text chunk, JPEG comment): a later sheet may replace it.
SHEET_MARKER = "tfrecord_tools contact sheet"
# Fonts with the letters of many scripts, where common systems keep them.
_SYSTEM_FONTS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/System/Library/Fonts/Supplemental/Arial Unicode.ttf",
    "/Library/Fonts/Arial Unicode.ttf",
    "/System/Library/Fonts/PingFang.ttc",
    "/System/Library/Fonts/Hiragino Sans GB.ttc",
    "/System/Library/Fonts/AppleSDGothicNeo.ttc",
    "C:/Windows/Fonts/segoeui.ttf",
    "C:/Windows/Fonts/msyh.ttc",
    "C:/Windows/Fonts/msgothic.ttc",
    "C:/Windows/Fonts/malgun.ttf",
)
# A code point no font has a glyph for: what a font draws for a character it lacks.
_NO_SUCH_CHARACTER = "\U0010fffd"


def _font_files():
    """TrueType font files to draw labels with, best first (see the module docstring)."""
    candidates = []
    matplotlib = importlib.util.find_spec("matplotlib")  # found, not imported: that takes a second
    if matplotlib is not None and matplotlib.submodule_search_locations:
        candidates.append(os.path.join(matplotlib.submodule_search_locations[0], "mpl-data", "fonts", "ttf",
                                       "DejaVuSans.ttf"))
    candidates += _SYSTEM_FONTS
    return [path for path in candidates if os.path.isfile(path)]


class LabelFonts:
    """Fonts at one size, and for each character the first of them that has its glyph.

    Parameters
    ----------
    size : int
        Font size in pixels.
    """

    def __init__(self, size):
        from PIL import ImageFont

        self.size = size
        self.fonts = [font for font in map(self._open, _font_files()) if font is not None]
        self.last_resort = ImageFont.load_default(size=size)  # Pillow's own: ASCII at least
        self.base = (self.fonts or [self.last_resort])[0]
        self._missing = {}  # font -> how it draws a character it lacks
        self._chosen = {}  # character -> font, or None when no font has it

    def _open(self, path):
        from PIL import ImageFont

        try:
            return ImageFont.truetype(path, self.size)
        except OSError:
            return None

    def has(self, font, character):
        """True when ``font`` draws ``character`` with a glyph of its own (not its box for missing letters)."""
        if character.isspace():
            return True
        mask = font.getmask(character)
        if mask.getbbox() is None:
            return False
        if font not in self._missing:
            missing = font.getmask(_NO_SUCH_CHARACTER)
            self._missing[font] = (missing.size, bytes(missing))
        return (mask.size, bytes(mask)) != self._missing[font]

    def font_for(self, character):
        """The first font that has ``character``, or None."""
        if character not in self._chosen:
            chosen = next((font for font in [*self.fonts, self.last_resort] if self.has(font, character)), None)
            if chosen is None:
                added = self._from_fontconfig(character)
                chosen = added if added is not None and self.has(added, character) else None
            self._chosen[character] = chosen
        return self._chosen[character]

    def _from_fontconfig(self, character):
        """A font with ``character`` that fontconfig (Linux) knows of, added to :attr:`fonts`; None if none."""
        tool = shutil.which("fc-match")
        if tool is None:
            return None
        try:
            found = subprocess.run([tool, "-f", "%{file}", f":charset={ord(character):x}"], capture_output=True,
                                   text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None
        if not os.path.isfile(found) or found in (font.path for font in self.fonts):
            return None
        font = self._open(found)
        if font is not None:
            self.fonts.append(font)
        return font

    def runs(self, text):
        """``[(font, text)]``: consecutive characters drawn with one font; one no font has is written as ``\\u732b``."""
        runs = []
        for character in text:
            font = self.font_for(character)
            if font is None:
                character, font = printable(character, code_points=True), self.base
            if runs and runs[-1][0] is font:
                runs[-1][1] += character
            else:
                runs.append([font, character])
        return [(font, part) for font, part in runs]

    def width(self, text):
        return sum(font.getlength(part) for font, part in self.runs(text))

    def fit(self, text, width):
        """``text``, shortened with an ellipsis until it is at most ``width`` pixels wide."""
        if self.width(text) <= width:
            return text
        while text and self.width(text + "…") > width:
            text = text[:-1]
        return text + "…"

    def draw(self, draw, left, middle, text, fill="black"):
        """Draw ``text`` from ``left``, centred on the line at height ``middle``."""
        for font, part in self.runs(text):
            draw.text((left, middle), part, font=font, fill=fill, anchor="lm")
            left += font.getlength(part)


def _damaged(out, shard_path, index, problem):
    return TFRecordToolsError(
        f"{shard_path} record {index} is damaged ({problem}); run 'python -m tfrecord_tools verify "
        f"{os.fspath(out)}' to list every problem, then write the dataset again"
    )


def _is_our_sheet(path):
    """True when the file at ``path`` is a contact sheet that ``info`` saved (it carries the marker)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            comment = image.info.get("comment", b"")
            if isinstance(comment, bytes):
                comment = comment.decode("utf-8", "replace")
            return SHEET_MARKER in (image.info.get("Software", ""), comment)
    except Exception:  # not an image at all, or unreadable: not ours
        return False


def _source_folder_around(path, sidecar):
    """The folder above ``path`` that looks like the dataset's source folder, else None.

    The sidecar records the source folder's name only; a folder of that name that holds
    a class folder or split folder of the dataset counts as the source.
    """
    inside = {*sidecar.get("classes", []), *sidecar.get("splits", {})}
    folder = os.path.dirname(os.path.realpath(path))
    while True:
        if os.path.basename(folder) == sidecar.get("source") and any(
                os.path.isdir(os.path.join(folder, name)) for name in inside):
            return folder
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def _check_target(out, path, sidecar, overwrite):
    """Refuse a sheet's path that would lose a file, land among the photos, or cannot be written."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise TFRecordToolsError(f"contact sheet {path}: the folder {folder} does not exist; create it first, or "
                                 "save the sheet elsewhere. Nothing was changed.")
    inside_out = os.path.realpath(folder) == os.path.realpath(os.fspath(out))
    if inside_out and not CONTACT_SHEET_PATTERN.match(os.path.basename(path)):
        raise TFRecordToolsError(
            f"contact sheet {path} would be saved inside the dataset folder under a name that the next 'write' "
            "would take for a foreign file; name it contact_sheet*.png (or .jpg), or save it elsewhere"
        )
    source = _source_folder_around(path, sidecar)
    if source is not None:
        raise TFRecordToolsError(
            f"contact sheet {path} would be saved inside the dataset's source folder {source}, among the photos "
            "(and the next 'write' would take it for one); save it elsewhere. Nothing was changed."
        )
    if os.path.lexists(path) and not overwrite:
        if os.path.isdir(path) or not (_is_our_sheet(path) or (inside_out and os.path.isfile(path))):
            raise TFRecordToolsError(
                f"contact sheet {path}: a file of that name exists and is no contact sheet saved by tfrecord_tools; "
                f"choose another name, or pass {option_name('--overwrite', 'overwrite=True')} to replace it. "
                "Nothing was changed."
            )


def _pick_images(out, sidecar, split, classes, per_class):
    """The first ``per_class`` records of each class: ``{class: [(shard path, record, JPEG bytes)]}``."""
    counts = sidecar["splits"][split]["class_counts"]
    picked = {name: [] for name in classes}
    wanted = sum(min(per_class, counts.get(name, 0)) for name in classes)
    found = 0
    for shard in sidecar["splits"][split]["shards"]:
        if found >= wanted:
            break
        shard_path = os.path.join(os.fspath(out), shard["file"])
        index = 0
        try:
            with open(shard_path, "rb") as handle:  # one record at a time
                for index, _, record in iter_file_records(handle, check_crc=False):
                    features = parse_example_bytes(record)
                    name = features["image/class/text"][0].decode("utf-8", "surrogateescape")
                    if name in picked and len(picked[name]) < per_class:
                        picked[name].append((shard_path, index, features["image/encoded"][0]))
                        found += 1
                        if found >= wanted:
                            break
        except OSError as error:
            raise TFRecordToolsError(f"cannot read {shard_path}: {error.strerror or error}") from None
        except RecordError as error:
            raise _damaged(out, shard_path, error.index, error.problem) from None
        except (ValueError, KeyError, IndexError, TypeError) as error:  # not an Example, or a feature missing
            raise _damaged(out, shard_path, index, f"{type(error).__name__}: {error}") from None
    return picked


def _thumbnail(encoded, side, where):
    """The image of a record scaled to fit a ``side`` x ``side`` cell; ``where`` names it if it is damaged."""
    from PIL import Image

    try:
        thumbnail = Image.open(io.BytesIO(encoded)).convert("RGB")
    except Exception as error:  # Pillow raises many types for damaged data
        raise _damaged(*where, f"its image does not decode: {error}") from None
    scale = side / max(thumbnail.size)  # fit the cell, up or down
    size = (max(1, round(thumbnail.width * scale)), max(1, round(thumbnail.height * scale)))
    # Small images are enlarged with hard edges (each pixel visible), large ones reduced smoothly.
    return thumbnail.resize(size, Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS)


def contact_sheet(out, path, *, split="train", per_class=6, thumbnail_px=96, max_classes=None, overwrite=False):
    """Save a grid of images under a title: one row per class, its first ``per_class`` images.

    Parameters
    ----------
    out : str or Path
        A folder written by ``write``.
    path : str or Path
        The file to write: ``.png``, ``.jpg`` or ``.jpeg`` (the format follows the
        name), in a folder that exists. Inside OUT its name must start with
        ``contact_sheet``, so that a later ``write`` knows it is no foreign file.
    split : str
        Which split to draw from.
    per_class : int
        Images per row, at most.
    thumbnail_px : int
        Side of each cell in pixels; images are scaled to fit it (up or down).
    max_classes : int, optional
        Draw only the first this many classes (default all).
    overwrite : bool
        Replace an existing file at ``path`` that is no contact sheet of ours. Without
        it, only a sheet that ``info`` saved earlier (its metadata says so, or it is a
        ``contact_sheet*`` file inside OUT) is replaced. A path inside the dataset's
        source folder is always refused.

    Returns
    -------
    str
        ``path``. The sheet is :data:`TITLE_HEIGHT` px of title (the dataset's folder,
        the split, its image count, the classes drawn), then one row of
        ``thumbnail_px`` per class drawn, with its label in a column of
        :data:`LABEL_WIDTH` px and as many cells as the fullest row; at most
        :data:`MAX_SHEET_PIXELS` pixels.

    Raises
    ------
    TFRecordToolsError
        A shard cannot be read, or one of its records or images is damaged
        (names the shard and the record; run ``verify`` for a full list); the
        sheet would be too large; or a name, folder or format that cannot work.
    """
    from PIL import Image, ImageDraw

    path = os.fspath(path)
    image_format = _SHEET_FORMATS.get(os.path.splitext(path)[1].lower())
    if image_format is None:
        raise TFRecordToolsError(f"contact sheet {path}: expected a name ending in .png, .jpg or .jpeg")
    for name, value in (("per_class", per_class), ("thumbnail_px", thumbnail_px)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise TFRecordToolsError(f"{name} must be a whole number of at least 1, got {value!r}")
    sidecar = read_sidecar(out)
    _check_target(out, path, sidecar, overwrite)
    if split not in sidecar["splits"]:
        raise TFRecordToolsError(f"split {split!r} is not in {out}; it has {', '.join(sidecar['splits'])}")
    classes = sidecar["classes"][:max_classes] if max_classes else sidecar["classes"]
    counts = sidecar["splits"][split]["class_counts"]
    # The canvas follows the data: rows for the classes drawn, columns for the fullest row.
    columns = max([min(per_class, counts.get(name, 0)) for name in classes] + [1])
    width, height = LABEL_WIDTH + columns * thumbnail_px, TITLE_HEIGHT + max(1, len(classes)) * thumbnail_px
    if width * height > MAX_SHEET_PIXELS:
        raise TFRecordToolsError(
            f"the contact sheet would be {width:,} x {height:,} px ({width * height * 3 / 1e9:.1f} GB in memory), "
            f"over the limit of {MAX_SHEET_PIXELS / 1e6:.0f} MP: draw fewer classes (--max-classes), fewer "
            "images per class (--per-class) or smaller cells (--thumbnail-px)"
        )
    picked = _pick_images(out, sidecar, split, classes, per_class)
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    title_fonts, label_fonts = LabelFonts(TITLE_FONT_PX), LabelFonts(LABEL_FONT_PX)
    drawn = f"{len(classes)} of {len(sidecar['classes'])}" if len(classes) < len(sidecar["classes"]) else len(classes)
    title = (f"{printable(os.path.basename(os.path.abspath(os.fspath(out))))}: {split}, "
             f"{sidecar['splits'][split]['images']:,} images in {drawn} classes")
    title_fonts.draw(draw, 8, TITLE_HEIGHT // 2, title_fonts.fit(title, width - 16))
    draw.line([(0, TITLE_HEIGHT - 1), (width, TITLE_HEIGHT - 1)], fill=(200, 200, 200))
    for row, name in enumerate(classes):
        top = TITLE_HEIGHT + row * thumbnail_px
        label_fonts.draw(draw, 6, top + thumbnail_px // 2, label_fonts.fit(f"{row}: {printable(name)}",
                                                                            LABEL_WIDTH - 12))
        for column, (shard_path, index, encoded) in enumerate(picked[name]):
            thumbnail = _thumbnail(encoded, thumbnail_px, (out, shard_path, index))
            sheet.paste(thumbnail, (LABEL_WIDTH + column * thumbnail_px + (thumbnail_px - thumbnail.width) // 2,
                                    top + (thumbnail_px - thumbnail.height) // 2))
    _save(sheet, path, image_format)
    return path


def _save(sheet, path, image_format):
    """Save under a temporary name, then rename: a sheet is never seen half-written."""
    from PIL import PngImagePlugin

    temporary = incomplete_path(path)
    try:
        if image_format == "JPEG":
            sheet.save(temporary, format=image_format, quality=90, comment=SHEET_MARKER)
        else:
            metadata = PngImagePlugin.PngInfo()
            metadata.add_text("Software", SHEET_MARKER)
            sheet.save(temporary, format=image_format, pnginfo=metadata)
        os.replace(temporary, path)
    except BaseException as error:
        if os.path.exists(temporary):
            os.remove(temporary)
        if isinstance(error, OSError):  # a full disk, say: name the sheet, not its temporary name
            raise OSError(error.errno, error.strerror, path) from None
        raise
