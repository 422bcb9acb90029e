"""verify: every problem named by shard and record, and a sidecar that load() could not use."""

import hashlib
import json
import os
import shutil
import struct

import pytest

import tfrecord_tools
from tfrecord_tools import record_io
from tfrecord_tools.__main__ import main

from fakes import flip_byte, jpeg_without_end_marker, make_class_folder, write_records


def test_verify_names_shard_and_record_of_a_corrupt_byte(source, tmp_path):
    out = tmp_path / "out"
    write_records(source, out, num_shards=1, test_fraction=0)
    shard = out / "train.tfrecord-00000-of-00001"
    first_record_size = 16 + struct.unpack("<Q", shard.read_bytes()[:8])[0]
    flip_byte(shard, first_record_size + 40)  # inside record 1
    report = tfrecord_tools.verify(out, raise_on_error=False)
    assert not report.ok
    messages = [str(problem) for problem in report.problems]
    assert any("train.tfrecord-00000-of-00001 record 1: data checksum" in text for text in messages)
    assert not any("record 1: record 1" in text for text in messages)  # said once
    assert any("SHA-256" in text for text in messages)
    with pytest.raises(tfrecord_tools.VerifyError):
        tfrecord_tools.verify(out)


def test_verify_finds_missing_and_unlisted_shards(source, tmp_path):
    out = tmp_path / "out"
    write_records(source, out, num_shards=2)
    os.rename(out / "test.tfrecord-00001-of-00002", out / "test.tfrecord-00001-of-00003")
    report = tfrecord_tools.verify(out, raise_on_error=False)
    text = "\n".join(map(str, report.problems))
    assert "test.tfrecord-00001-of-00002: cannot read" in text
    assert "test.tfrecord-00001-of-00003: shard file is not listed" in text


def test_verify_catches_a_wrong_label(source, tmp_path):
    out = tmp_path / "out"
    write_records(source, out, num_shards=1, test_fraction=0)
    shard = out / "train.tfrecord-00000-of-00001"
    records = [record for _, _, record in record_io.iter_records(shard.read_bytes())]
    features = record_io.parse_example_bytes(records[2])
    features = {name: values[0] for name, values in features.items()}
    features["image/class/label"] = (features["image/class/label"] + 1) % 3
    records[2] = record_io.serialize_example(features)
    data = b"".join(map(record_io.frame_record, records))
    shard.write_bytes(data)
    sidecar = json.loads((out / "dataset.json").read_text())
    sidecar["splits"]["train"]["shards"][0]["sha256"] = hashlib.sha256(data).hexdigest()
    (out / "dataset.json").write_text(json.dumps(sidecar))
    report = tfrecord_tools.verify(out, raise_on_error=False)
    assert [str(problem) for problem in report.problems] == [
        f"train.tfrecord-00000-of-00001 record 2: label {features['image/class/label']} does not match class "
        f"{features['image/class/text'].decode()!r}, which has label {(features['image/class/label'] - 1) % 3}"
    ]


def test_verify_without_sidecar_says_what_is_missing(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(tfrecord_tools.SidecarError, match="dataset.json is missing"):
        tfrecord_tools.verify(tmp_path / "empty")


def test_verify_during_a_running_write_says_so(tmp_path):
    fcntl = pytest.importorskip("fcntl")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".tfrecord_tools-progress.jsonl").write_text("")
    descriptor = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)  # what a running write holds
        with pytest.raises(tfrecord_tools.SidecarError, match="running now"):
            tfrecord_tools.verify(out)
    finally:
        os.close(descriptor)
    with pytest.raises(tfrecord_tools.SidecarError, match="interrupted"):
        tfrecord_tools.verify(out)


def test_verify_flags_a_stored_jpeg_without_end_marker(source, tmp_path):
    """Shards written before the fix hold such JPEGs as they are: verify must say so."""
    out = tmp_path / "out"
    write_records(source, out, num_shards=1, test_fraction=0)
    shard = out / "train.tfrecord-00000-of-00001"
    records = [record for _, _, record in record_io.iter_records(shard.read_bytes())]
    features = {name: values[0] for name, values in record_io.parse_example_bytes(records[1]).items()}
    cut = jpeg_without_end_marker()
    features.update({"image/encoded": cut, "image/height": 64, "image/width": 64, "image/channels": 3,
                     "image/reencoded": 0, "image/sha256": hashlib.sha256(cut).hexdigest().encode()})
    records[1] = record_io.serialize_example(features)
    data = b"".join(map(record_io.frame_record, records))
    shard.write_bytes(data)
    sidecar = json.loads((out / "dataset.json").read_text())
    sidecar["splits"]["train"]["shards"][0].update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    sidecar["splits"]["train"].update(bytes=len(data))
    sidecar["splits"]["train"]["image_size"].update(max_height=64, max_width=64)
    (out / "dataset.json").write_text(json.dumps(sidecar))
    problems = [str(problem) for problem in tfrecord_tools.verify(out, raise_on_error=False).problems]
    assert len(problems) == 1 and "record 1: JPEG has no end-of-image marker" in problems[0], problems


def damage_image_size(content):
    content["splits"]["train"]["image_size"].update(max_height=64, min_height=64)


def damage_count(content):
    content["splits"]["train"]["images"] = 999


# B8
@pytest.mark.parametrize("damage", [damage_image_size, damage_count], ids=["image size", "split count"])
def test_verify_catches_a_sidecar_that_load_cannot_use(tmp_path, damage):
    source = make_class_folder(tmp_path / "src")
    out = tmp_path / "out"
    write_records(source, out, test_fraction=0)
    content = json.loads((out / "dataset.json").read_text())
    damage(content)
    (out / "dataset.json").write_text(json.dumps(content))
    report = tfrecord_tools.verify(out, raise_on_error=False)
    assert not report.ok and any(problem.shard == "train" for problem in report.problems), report.format()


STRUCTURAL_DAMAGE = {
    "shard without bytes": lambda content: content["splits"]["train"]["shards"][0].pop("bytes"),
    "shard without sha256": lambda content: content["splits"]["train"]["shards"][0].pop("sha256"),
    "split without class_counts": lambda content: content["splits"]["train"].pop("class_counts"),
    "splits as a list": lambda content: content.update(splits=list(content["splits"].values())),
    "null split": lambda content: content["splits"].update(train=None),
    "null shard": lambda content: content["splits"]["train"]["shards"].__setitem__(0, None),
    "null classes": lambda content: content.update(classes=None),
}


# B8
@pytest.mark.parametrize("damage", list(STRUCTURAL_DAMAGE.values()), ids=list(STRUCTURAL_DAMAGE))
def test_damaged_sidecar_is_one_clear_error_in_verify_and_info(tmp_path, damage, capsys):
    source = make_class_folder(tmp_path / "src", per_class=2)
    out = tmp_path / "out"
    write_records(source, out, test_fraction=0)
    content = json.loads((out / "dataset.json").read_text())
    damage(content)
    (out / "dataset.json").write_text(json.dumps(content))
    for command in ("verify", "info"):
        assert main([command, str(out), "--workers", "1"] if command == "verify" else [command, str(out)]) == 1
        error = capsys.readouterr().err
        assert "dataset.json is damaged" in error and "Traceback" not in error


# B8
def test_rejected_list_that_is_not_utf8_is_a_problem_not_a_crash(tmp_path):
    source = make_class_folder(tmp_path / "src", per_class=2)
    out = tmp_path / "out"
    write_records(source, out, test_fraction=0)
    (out / "rejected.jsonl").write_bytes(b"\xff\xfe not utf-8\n")
    report = tfrecord_tools.verify(out, raise_on_error=False)
    assert [problem.shard for problem in report.problems] == ["rejected.jsonl"]
    assert "UTF-8" in report.problems[0].message


# B9
def test_verify_finds_a_stray_six_digit_shard(tmp_path):
    source = make_class_folder(tmp_path / "src", per_class=2)
    out = tmp_path / "out"
    write_records(source, out, test_fraction=0)
    (out / "train.tfrecord-00000-of-100000").write_bytes(b"")
    report = tfrecord_tools.verify(out, raise_on_error=False)
    assert [problem.shard for problem in report.problems] == ["train.tfrecord-00000-of-100000"]



def list_test_shard_under_train(content):
    test_shard = content["splits"]["test"]["shards"][0]
    content["splits"]["train"]["shards"].append(test_shard)
    return test_shard


def list_a_train_shard_twice(content):
    train_shard = content["splits"]["train"]["shards"][0]
    content["splits"]["train"]["shards"].append(train_shard)
    return train_shard


# N8
@pytest.mark.parametrize("damage", [list_test_shard_under_train, list_a_train_shard_twice],
                         ids=["a test shard under train", "a shard twice"])
def test_a_shard_listed_under_another_split_or_twice_is_refused(finished, tmp_path, damage, capsys):
    out = tmp_path / "out"
    shutil.copytree(finished[1], out)
    content = json.loads((out / "dataset.json").read_text())
    added = damage(content)
    train = content["splits"]["train"]  # the counts adjusted, as an editor would
    train["images"] += added["images"]
    train["bytes"] += added["bytes"]
    for name, count in added["class_counts"].items():
        train["class_counts"][name] += count
    (out / "dataset.json").write_text(json.dumps(content))
    assert main(["verify", str(out), "--workers", "1"]) == 1
    error = capsys.readouterr().err
    assert "dataset.json is damaged: split 'train' lists" in error and added["file"] in error
    with pytest.raises(tfrecord_tools.SidecarError):  # load() reads the list too: it gets no extra images
        tfrecord_tools.read_sidecar(out)


# N9
@pytest.mark.parametrize("digest", ["0" * 63, "g" * 64, None], ids=["63 digits", "not hex", "missing"])
def test_a_plan_digest_of_the_wrong_shape_is_a_problem(finished, tmp_path, digest):
    out = tmp_path / "out"
    shutil.copytree(finished[1], out)
    content = json.loads((out / "dataset.json").read_text())
    shard = content["splits"]["train"]["shards"][0]
    shard["plan_sha256"] = digest
    (out / "dataset.json").write_text(json.dumps(content))
    report = tfrecord_tools.verify(out, workers=1, raise_on_error=False)
    assert [str(problem) for problem in report.problems] == [
        f"{shard['file']}: dataset.json gives its plan_sha256 as {digest!r}, not 64 hex digits"]
