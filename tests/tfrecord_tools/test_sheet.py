"""The contact sheet: its title, labels in a font that has their letters, its size, place and what it may replace."""

import numpy as np
import pytest
from PIL import Image

import tfrecord_tools
from tfrecord_tools import sheet
from tfrecord_tools.__main__ import main

from fakes import image_bytes, make_class_folder, write_file, write_records


def test_contact_sheet_of_a_damaged_shard_names_shard_and_record(source, tmp_path):
    out = tmp_path / "out"
    write_records(source, out, num_shards=1, test_fraction=0)
    shard = out / "train.tfrecord-00000-of-00001"
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(tfrecord_tools.TFRecordToolsError, match=r"train\.tfrecord-00000-of-00001 record 14 .*verify"):
        tfrecord_tools.contact_sheet(out, tmp_path / "sheet.png", per_class=10)


# B6
def test_contact_sheet_is_sized_from_the_data(tmp_path, monkeypatch):
    source = make_class_folder(tmp_path / "src")  # 5 images per class
    out = tmp_path / "out"
    write_records(source, out, test_fraction=0)
    path = sheet.contact_sheet(out, tmp_path / "sheet.png", per_class=1000)
    assert Image.open(path).size == (sheet.LABEL_WIDTH + 5 * 96, sheet.TITLE_HEIGHT + 3 * 96)
    monkeypatch.setattr(sheet, "MAX_SHEET_PIXELS", 10_000)
    with pytest.raises(tfrecord_tools.TFRecordToolsError, match="--max-classes"):
        sheet.contact_sheet(out, tmp_path / "big.png")
    assert not (tmp_path / "big.png").exists()


def test_contact_sheet_format_scaling_and_place(tmp_path):
    source = make_class_folder(tmp_path / "src", per_class=2, size=(32, 32))
    out = tmp_path / "out"
    write_records(source, out, test_fraction=0)
    path = sheet.contact_sheet(out, tmp_path / "sheet.jpg", thumbnail_px=96)
    drawn = Image.open(path)
    assert drawn.format == "JPEG"
    top, left = sheet.TITLE_HEIGHT, sheet.LABEL_WIDTH
    cell = np.asarray(drawn.convert("L"))[top : top + 96, left : left + 96]
    assert (cell < 250).mean() > 0.9  # the 32 px image fills its 96 px cell
    with pytest.raises(tfrecord_tools.TFRecordToolsError, match="contact_sheet"):
        sheet.contact_sheet(out, out / "preview.png")
    sheet.contact_sheet(out, out / "contact_sheet_train.png")
    assert write_records(source, out, test_fraction=0)["shards_reused"] == 4  # the sheet does not block the write


def test_contact_sheet_never_replaces_a_file_that_is_not_one(finished, tmp_path):
    source, out = finished
    photo = next(source.rglob("*.jpg"))
    before = photo.read_bytes()
    with pytest.raises(tfrecord_tools.TFRecordToolsError, match="inside the dataset's source folder"):
        sheet.contact_sheet(out, photo, overwrite=True)
    with pytest.raises(tfrecord_tools.TFRecordToolsError, match="inside the dataset's source folder"):
        sheet.contact_sheet(out, source / "sheet.png")
    assert photo.read_bytes() == before and not (source / "sheet.png").exists()

    precious = tmp_path / "holiday.jpg"
    precious.write_bytes(before)
    assert main(["info", str(out), "--contact-sheet", str(precious)]) == 1
    assert precious.read_bytes() == before
    # A sheet saved earlier (PNG or JPEG) is replaced without a word; a foreign file only with --overwrite.
    for name in ("sheet.png", "sheet.jpg"):
        sheet.contact_sheet(out, tmp_path / name)
        assert sheet._is_our_sheet(tmp_path / name)
        sheet.contact_sheet(out, tmp_path / name)
    assert main(["info", str(out), "--contact-sheet", str(precious), "--overwrite"]) == 0
    assert precious.read_bytes() != before


# N12
def test_a_contact_sheet_into_a_missing_folder_names_the_target(finished, tmp_path, capsys):
    _, out = finished
    target = tmp_path / "no_such_folder" / "sheet.png"
    assert main(["info", str(out), "--contact-sheet", str(target)]) == 1
    error = capsys.readouterr().err
    assert f"contact sheet {target}: the folder {target.parent} does not exist" in error
    assert ".incomplete" not in error and "Traceback" not in error


def test_a_contact_sheet_has_a_title_and_labels_in_a_font_with_their_letters(tmp_path):
    source = tmp_path / "wildlife"
    for index, name in enumerate(["Ñandú", "猫", "cat"]):
        for number in range(2):
            write_file(source / name / f"{number}.jpg", image_bytes(size=(32, 24), seed=10 * index + number))
    out = tmp_path / "records"
    write_records(source, out, test_fraction=0)
    drawn = np.asarray(Image.open(sheet.contact_sheet(out, tmp_path / "sheet.png")).convert("L"))
    assert drawn.shape == (sheet.TITLE_HEIGHT + 3 * 96, sheet.LABEL_WIDTH + 2 * 96)
    title, label = drawn[: sheet.TITLE_HEIGHT - 2, :], drawn[sheet.TITLE_HEIGHT :, : sheet.LABEL_WIDTH]
    assert (title < 128).sum() > 200 and (label < 128).sum() > 200  # text in both
    fonts = sheet.LabelFonts(sheet.LABEL_FONT_PX)
    for font, part in fonts.runs("0: Ñandú 猫 bad\\xff"):
        # Every character is drawn with a font that has it; one that no font has is written as its code point.
        assert all(fonts.has(font, character) for character in part), part
    if sheet._font_files():  # DejaVu (matplotlib's or the system's): Latin letters beyond ASCII are drawn
        assert fonts.font_for("Ñ") is not None and fonts.font_for("ú") is not None
    if fonts.font_for("猫") is None:
        assert [part for _, part in fonts.runs("猫")] == ["\\u732b"]
