"""info: the table of classes and splits, from the sidecar."""

from PIL import Image

import tfrecord_tools
from tfrecord_tools import sheet

from fakes import write_records


def test_info_and_contact_sheet(source, tmp_path):
    out = tmp_path / "out"
    write_records(source, out, num_shards=1)
    info = tfrecord_tools.dataset_info(out)
    assert info["splits"]["train"]["images"] == 12 and info["classes"] == ["cat", "dog", "fox"]
    table = tfrecord_tools.format_info(info).splitlines()
    assert table[1].split() == ["label", "class", "test", "train"]
    rows = [f"{label:>5}  {name:<5}           1           4" for label, name in enumerate(info["classes"])]
    assert table[3:6] == rows  # 5 images a class: 1 test, 4 train
    path = tfrecord_tools.contact_sheet(out, out / "contact_sheet.png", per_class=3, thumbnail_px=32)
    assert Image.open(path).size == (sheet.LABEL_WIDTH + 3 * 32, sheet.TITLE_HEIGHT + 3 * 32)
    assert tfrecord_tools.verify(out).ok  # the contact sheet is one of our files
