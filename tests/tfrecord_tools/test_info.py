"""info and the contact sheet: the table, the sheet's size, place and what it may replace."""

import numpy as np
import pytest
from PIL import Image

import tfrecord_tools
from tfrecord_tools import info
from tfrecord_tools.__main__ import main

from fakes import make_class_folder, write_records


def test_info_and_contact_sheet(source, tmp_path):
    out = tmp_path / "out"
    write_records(source, out, num_shards=1)
    info = tfrecord_tools.dataset_info(out)
    assert info["splits"]["train"]["images"] == 12 and info["classes"] == ["cat", "dog", "fox"]
    table = tfrecord_tools.format_info(info)
    assert "fox" in table and "train" in table
    path = tfrecord_tools.contact_sheet(out, out / "contact_sheet.png", per_class=3, thumbnail_px=32)
    assert Image.open(path).size == (160 + 3 * 32, 3 * 32)
    assert tfrecord_tools.verify(out).ok  # the contact sheet is one of our files


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
    path = info.contact_sheet(out, tmp_path / "sheet.png", per_class=1000)
    assert Image.open(path).size == (160 + 5 * 96, 3 * 96)
    monkeypatch.setattr(info, "MAX_SHEET_PIXELS", 10_000)
    with pytest.raises(tfrecord_tools.TFRecordToolsError, match="--max-classes"):
        info.contact_sheet(out, tmp_path / "big.png")
    assert not (tmp_path / "big.png").exists()


def test_contact_sheet_format_scaling_and_place(tmp_path):
    source = make_class_folder(tmp_path / "src", per_class=2, size=(32, 32))
    out = tmp_path / "out"
    write_records(source, out, test_fraction=0)
    path = info.contact_sheet(out, tmp_path / "sheet.jpg", thumbnail_px=96)
    sheet = Image.open(path)
    assert sheet.format == "JPEG"
    cell = np.asarray(sheet.convert("L"))[0:96, 160:256]
    assert (cell < 250).mean() > 0.9  # the 32 px image fills its 96 px cell
    with pytest.raises(tfrecord_tools.TFRecordToolsError, match="contact_sheet"):
        info.contact_sheet(out, out / "preview.png")
    info.contact_sheet(out, out / "contact_sheet_train.png")
    assert write_records(source, out, test_fraction=0)["shards_reused"] == 4  # the sheet does not block the write


def test_contact_sheet_never_replaces_a_file_that_is_not_one(finished, tmp_path):
    source, out = finished
    photo = next(source.rglob("*.jpg"))
    before = photo.read_bytes()
    with pytest.raises(tfrecord_tools.TFRecordToolsError, match="inside the dataset's source folder"):
        info.contact_sheet(out, photo, overwrite=True)
    with pytest.raises(tfrecord_tools.TFRecordToolsError, match="inside the dataset's source folder"):
        info.contact_sheet(out, source / "sheet.png")
    assert photo.read_bytes() == before and not (source / "sheet.png").exists()

    precious = tmp_path / "holiday.jpg"
    precious.write_bytes(before)
    assert main(["info", str(out), "--contact-sheet", str(precious)]) == 1
    assert precious.read_bytes() == before
    # A sheet saved earlier (PNG or JPEG) is replaced without a word; a foreign file only with --overwrite.
    for name in ("sheet.png", "sheet.jpg"):
        info.contact_sheet(out, tmp_path / name)
        assert info._is_our_sheet(tmp_path / name)
        info.contact_sheet(out, tmp_path / name)
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
