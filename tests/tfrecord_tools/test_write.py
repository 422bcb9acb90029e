"""Writing shards: byte-identical output, duplicates, errors that name the file, workers that die."""

import collections
import errno
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from PIL import Image

import tfrecord_tools
from tfrecord_tools import write as write_module
from tfrecord_tools.__main__ import main
from tfrecord_tools.sidecar import INCOMPLETE_PREFIX

from fakes import (
    all_records,
    image_bytes,
    make_class_folder,
    start_slow_write,
    write_file,
    write_records,
)


def test_same_inputs_and_seed_give_byte_identical_output(tmp_path):
    source = make_class_folder(tmp_path / "src", per_class=8)
    write_file(source / "cat" / "alpha.png", image_bytes("PNG", mode="RGBA", seed=1))
    write_records(source, tmp_path / "one", seed=5, num_shards=2, workers=1)
    write_records(source, tmp_path / "two", seed=5, num_shards=2, workers=2)
    write_records(source, tmp_path / "other_seed", seed=6, num_shards=2, workers=1)
    names = sorted(os.listdir(tmp_path / "one"))
    assert names == sorted(os.listdir(tmp_path / "two"))
    for name in names:
        if name != "dataset.json":
            assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    sidecars = [json.loads((tmp_path / folder / "dataset.json").read_text()) for folder in ("one", "two")]
    assert sidecars[0] == sidecars[1]
    assert (tmp_path / "one" / "train.tfrecord-00000-of-00002").read_bytes() != (
        tmp_path / "other_seed" / "train.tfrecord-00000-of-00002"
    ).read_bytes()


def test_duplicates_across_splits_are_reported(tmp_path):
    source = make_class_folder(tmp_path / "src", classes=("a",), per_class=10)
    for index in range(10):  # every image twice: some copies must land in different splits
        write_file(source / "a" / f"copy_{index}.jpg", (source / "a" / f"{index:03d}.jpg").read_bytes())
    summary = write_records(source, tmp_path / "out", test_fraction=0.5)
    duplicates = summary["duplicates"]
    splits_of = collections.defaultdict(set)  # SHA-256 of the source -> splits holding it
    for name, record in all_records(tmp_path / "out"):
        splits_of[record["image/sha256"][0]].add(name.split(".")[0])
    across = sum(len(splits) == 2 for splits in splits_of.values())
    assert 0 < across < 10  # with 10 of 20 images held out, some pairs are split, some not
    assert duplicates["across_splits_count"] == across and duplicates["within_split_groups"] == 10 - across
    assert "more than one split" in tfrecord_tools.format_summary(summary)


def test_the_same_image_under_two_classes_is_named(tmp_path):
    source = make_class_folder(tmp_path / "src")
    shutil.copy(source / "cat" / "000.jpg", source / "dog" / "copy_of_a_cat.jpg")
    summary = write_records(source, tmp_path / "out", test_fraction=0)
    conflicts = summary["duplicates"]["conflicting_labels"]
    assert summary["duplicates"]["conflicting_labels_count"] == 1
    assert conflicts[0]["files"] == ["train:cat/000.jpg", "train:dog/copy_of_a_cat.jpg"]
    assert "train:dog/copy_of_a_cat.jpg" in tfrecord_tools.format_summary(summary)


def test_write_shard_errors_name_the_file(tmp_path):
    big = tmp_path / "strip.png"
    buffer = io.BytesIO()
    Image.new("L", (70_000, 8)).save(buffer, format="PNG")
    big.write_bytes(buffer.getvalue())
    gone = tmp_path / "gone.jpg"

    def job(path):
        sha256 = hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "0" * 64
        return {"out": str(tmp_path), "file": "train.tfrecord-00000-of-00001", "plan_sha256": "x",
                "max_pixels": 10**9, "entries": [(str(path), path.name, "a", 0, sha256, "png", True, 8, 70_000, 3)]}

    with pytest.raises(tfrecord_tools.ImageWriteError, match=r"strip\.png: cannot be stored: .*65,500"):
        write_module.write_shard(job(big))
    with pytest.raises(tfrecord_tools.SourceChangedError, match=r"gone\.jpg cannot be read any more"):
        write_module.write_shard(job(gone))
    assert sorted(os.listdir(tmp_path)) == ["strip.png"]  # no temporary shard left behind


@pytest.mark.skipif(not os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children"), reason="needs Linux /proc")
def test_worker_killed_during_write_stops_it_with_a_clear_error(source, tmp_path):
    """The out-of-memory killer's SIGKILL to one worker: one line, exit 1, within seconds; a re-run finishes."""
    out = tmp_path / "out"
    process = start_slow_write(source, out, tmp_path / "slow", 0.3, "--workers", "2", "--num-shards", "2")
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    workers = [int(pid) for pid in children
               if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
               and b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()]
    os.kill(workers[0], signal.SIGKILL)
    try:
        _, stderr = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail("the write hung after a worker died")
    assert process.returncode == 1, stderr
    assert "a worker process died (killed with SIGKILL: out of memory?) while writing shards" in stderr
    assert "run the same command again" in stderr and "Traceback" not in stderr
    assert write_records(source, out, num_shards=2)["totals"]["images"] == 15
    assert tfrecord_tools.verify(out).ok


class FullDisk(io.RawIOBase):
    """A file that takes ``room`` bytes, then fails as a full disk does (ENOSPC)."""

    def __init__(self, file, room):
        self.file, self.room = file, room

    def writable(self):
        return True

    def write(self, data):
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.file.write(data)

    def fileno(self):
        return self.file.fileno()

    def close(self):
        self.file.close()
        super().close()


# N10
def test_a_full_disk_with_one_worker_names_the_shard(source, tmp_path, monkeypatch, capsys):
    real_open = open

    def open_on_a_full_disk(path, mode="r", *arguments, **keywords):
        if INCOMPLETE_PREFIX in os.fspath(path) and ".tfrecord-" in os.fspath(path):
            return io.BufferedWriter(FullDisk(real_open(path, "wb", buffering=0), room=2000))
        return real_open(path, mode, *arguments, **keywords)

    monkeypatch.setattr(write_module, "open", open_on_a_full_disk, raising=False)  # the shards' open()
    assert main(["write", str(source), str(tmp_path / "out"), "--workers", "1", "--no-progress"]) == 1
    error = capsys.readouterr().err
    shard = r"(train|test)\.tfrecord-\d{5}-of-\d{5}"
    assert re.fullmatch(rf"tfrecord_tools write: error: {re.escape(str(tmp_path / 'out'))}/{shard}: No space left on "
                        r"device; free some space, then run the same command again to finish \(finished shards are "
                        r"kept\)\n", error), error
