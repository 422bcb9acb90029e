"""dataset.json and shard names: what the sidecar records and how shard names are read."""

import hashlib
import shutil

import pytest

import tfrecord_tools
from tfrecord_tools import sidecar

from fakes import make_class_folder, write_records


def test_sidecar_describes_the_shards(source, tmp_path):
    summary = write_records(source, tmp_path / "out", num_shards=2)
    sidecar = tfrecord_tools.read_sidecar(tmp_path / "out")
    assert sidecar["classes"] == ["cat", "dog", "fox"] and sidecar["label_to_index"] == {"cat": 0, "dog": 1, "fox": 2}
    assert set(sidecar["features"]) >= {"image/encoded", "image/class/label", "image/sha256", "image/filename"}
    assert sidecar["seed"] == 0 and sidecar["tool_version"] == tfrecord_tools.__version__
    for split in sidecar["splits"].values():
        for shard in split["shards"]:
            data = (tmp_path / "out" / shard["file"]).read_bytes()
            assert shard["bytes"] == len(data) and shard["sha256"] == hashlib.sha256(data).hexdigest()
    assert summary["images_per_second"] == pytest.approx(summary["totals"]["images"] / summary["seconds"])
    assert f"{summary['images_per_second']:,.0f} images/s" in tfrecord_tools.format_summary(summary)


def test_sidecar_does_not_depend_on_where_the_source_lies(tmp_path):
    make_class_folder(tmp_path / "one" / "photos", per_class=2)
    shutil.copytree(tmp_path / "one" / "photos", tmp_path / "two" / "deeper" / "photos")
    write_records(tmp_path / "one" / "photos", tmp_path / "out1")
    write_records(tmp_path / "two" / "deeper" / "photos", tmp_path / "out2")
    assert (tmp_path / "out1" / "dataset.json").read_bytes() == (tmp_path / "out2" / "dataset.json").read_bytes()


# B9
def test_shard_names_with_six_digits_are_ours():
    name = sidecar.shard_file_name("train", 5, 100_000)
    assert name == "train.tfrecord-00005-of-100000"
    assert sidecar.parse_shard_name(name) == ("train", 5, 100_000)
    assert sidecar.is_our_file(name) and sidecar.is_our_file(sidecar.shard_file_name("test", 123_456, 1_000_000))
    for index, count in ((0, 1), (99_998, 99_999), (99_999, 100_000), (100_000, 100_001)):
        assert sidecar.parse_shard_name(sidecar.shard_file_name("val", index, count)) == ("val", index, count)
    # Shaped like a shard but not one we would write: no file of ours, but still a shard for verify.
    stray = "train.tfrecord-000001-of-100000"
    assert sidecar.parse_shard_name(stray) is None and sidecar.SHARD_NAME_PATTERN.match(stray)
    assert sidecar.parse_shard_name("train.tfrecord-00003-of-00002") is None

