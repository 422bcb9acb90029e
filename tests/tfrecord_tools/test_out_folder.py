"""The output folder: what is refused, locked, reused, repaired and left behind after a crash."""

import errno
import json
import os
import shutil
import signal
import time

import pytest

import tfrecord_tools
from tfrecord_tools import out_folder
from tfrecord_tools import write as write_module
from tfrecord_tools.__main__ import main
from tfrecord_tools.sidecar import INCOMPLETE_PREFIX, PROGRESS_NAME, SHARD_NAME_PATTERN

from fakes import (
    make_class_folder,
    make_split_folder,
    read_records,
    rejected_lines,
    start_slow_write,
    wait_until,
    write_file,
    write_records,
)


def test_output_folder_with_other_data_is_refused_and_untouched(source, tmp_path):
    out = tmp_path / "out"
    write_file(out / "thesis.txt", b"precious")
    write_file(out / "train-00000-of-00001.tfrecord", b"someone else's")
    with pytest.raises(tfrecord_tools.OutputFolderError, match="thesis.txt"):
        write_records(source, out)
    assert sorted(os.listdir(out)) == ["thesis.txt", "train-00000-of-00001.tfrecord"]
    assert (out / "thesis.txt").read_bytes() == b"precious"


def test_output_inside_source_is_refused(source):
    with pytest.raises(tfrecord_tools.OutputFolderError, match="inside the source"):
        write_records(source, source / "cat" / "out")


def test_unwritable_output_folder_is_found_before_the_check(tmp_path, monkeypatch):
    source = make_class_folder(tmp_path / "src", per_class=1)
    real_open = open

    def refusing_open(path, *args, **kwargs):
        if "write-test" in os.fspath(path):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(out_folder, "open", refusing_open, raising=False)
    monkeypatch.setattr(write_module, "scan_in_pool", lambda *args, **kwargs: pytest.fail("checked first"))
    with pytest.raises(tfrecord_tools.OutputFolderError, match="cannot write into the output folder"):
        write_records(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # a failed write leaves no empty OUT


def test_failed_write_leaves_no_empty_out_and_lists_what_it_rejected(tmp_path):
    source = tmp_path / "src"
    (source / "empty_class").mkdir(parents=True)
    with pytest.raises(tfrecord_tools.SourceFolderError):
        write_records(source, tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()
    write_file(source / "a" / "notes.txt", b"not an image")
    with pytest.raises(tfrecord_tools.SourceFolderError, match="rejected.jsonl"):
        write_records(source, tmp_path / "all_rejected")
    assert rejected_lines(tmp_path / "all_rejected")["a/notes.txt"]["category"] == "not_an_image"


def test_os_metadata_files_in_out_do_not_block_writing(source, tmp_path):
    out = tmp_path / "out"
    write_file(out / ".DS_Store", b"\x00\x00\x00\x01Bud1")
    write_file(out / "Thumbs.db", b"thumbs")
    write_records(source, out, num_shards=1)
    assert write_records(source, out, num_shards=1)["shards_reused"] == 2
    assert (out / ".DS_Store").exists() and (out / "Thumbs.db").read_bytes() == b"thumbs"
    assert tfrecord_tools.verify(out).ok


def test_overwrite_never_deletes_a_foreign_dataset_json(tmp_path):
    source = make_class_folder(tmp_path / "src", per_class=1)
    out = tmp_path / "out"
    out.mkdir()
    (out / "dataset.json").write_text('{"mine": true}')
    with pytest.raises(tfrecord_tools.OutputFolderError, match="did not write"):
        write_records(source, out, overwrite=True)
    assert (out / "dataset.json").read_text() == '{"mine": true}'


def test_rerun_refuses_files_merely_named_like_shards(finished, tmp_path):
    source, out1 = finished
    out = tmp_path / "ow6"
    shutil.copytree(out1, out)
    (out / "validation.tfrecord-00000-of-00001").write_text("precious\n")
    (out / "test.tfrecord-00007-of-00009").write_text("precious\n")
    for overwrite in (False, True):
        with pytest.raises(tfrecord_tools.OutputFolderError,
                           match=r"did not write \(test.tfrecord-00007-of-00009, validation.tfrecord-00000-of-00001\)"):
            write_records(source, out, num_shards=1, overwrite=overwrite)
        assert (out / "validation.tfrecord-00000-of-00001").read_text() == "precious\n"
        assert (out / "test.tfrecord-00007-of-00009").read_text() == "precious\n"


def test_an_unlisted_shard_of_ours_is_still_ours(finished, tmp_path):
    # A shard renamed into place just before a crash is in no list, but holds our records.
    source, out1 = finished
    out = tmp_path / "out"
    shutil.copytree(out1, out)
    shard = next(out.glob("train.tfrecord-*"))
    shutil.copy(shard, out / "validation.tfrecord-00000-of-00001")
    write_records(source, out, num_shards=1)
    assert not (out / "validation.tfrecord-00000-of-00001").exists()


def test_a_second_write_into_the_same_folder_stops_at_once(source, tmp_path):
    """Two writes into one folder would mix their shards: the second is refused while the first runs."""
    out = tmp_path / "out"
    first = start_slow_write(source, out, tmp_path / "slow", 0.2, "--workers", "1", "--num-shards", "3",
                             "--test-fraction", "0")
    before = sorted(os.listdir(out))
    with pytest.raises(tfrecord_tools.OutputFolderError, match="another tfrecord_tools write is running"):
        write_records(source, out, num_shards=3, test_fraction=0.0)
    # The refused write removed nothing (the running write may have renamed its temporary files meanwhile).
    assert {name for name in before if not name.startswith(INCOMPLETE_PREFIX)} <= set(os.listdir(out))
    _, stderr = first.communicate(timeout=60)
    assert first.returncode == 0, stderr
    assert tfrecord_tools.verify(out).records_checked == 15
    assert write_records(source, out, num_shards=3, test_fraction=0.0)["shards_reused"] == 3  # the lock is gone


def test_rerun_reuses_and_changed_settings_need_overwrite(source, tmp_path):
    out = tmp_path / "out"
    write_records(source, out, num_shards=2)
    again = write_records(source, out, num_shards=2)
    assert again["shards_reused"] == 4 and again["shards_written"] == 0
    with pytest.raises(tfrecord_tools.OutputFolderError, match="overwrite"):
        write_records(source, out, num_shards=3)
    replaced = write_records(source, out, num_shards=3, overwrite=True)
    assert replaced["totals"]["shards"] == 6
    assert sorted(name for name in os.listdir(out) if SHARD_NAME_PATTERN.match(name)) == [
        f"{split}.tfrecord-0000{index}-of-00003" for split in ("test", "train") for index in range(3)
    ]
    assert tfrecord_tools.verify(out).ok


@pytest.mark.parametrize("options, expected", [
    ({"seed": 1}, "with other settings (seed 0, now 1)"),
    ({"max_side": 8}, "with other settings (max side none, now 8)"),
])
def test_a_rerun_with_another_setting_names_it(finished, tmp_path, options, expected):
    source, out1 = finished
    out = tmp_path / "out"
    shutil.copytree(out1, out)
    with pytest.raises(tfrecord_tools.OutputFolderError) as refused:
        write_records(source, out, num_shards=1, **options)
    assert expected in str(refused.value)


# B1
def test_rerun_after_a_split_moved_away_keeps_the_finished_split(tmp_path):
    source = make_split_folder(tmp_path / "src")
    out = tmp_path / "out"
    write_records(source, out)
    test_shards = sorted(path.name for path in out.glob("test.tfrecord-*"))
    assert test_shards
    shutil.move(source / "test", tmp_path / "test_elsewhere")
    with pytest.raises(tfrecord_tools.OutputFolderError, match="not in the new plan"):
        write_records(source, out)
    assert sorted(path.name for path in out.glob("test.tfrecord-*")) == test_shards
    assert "test" in json.loads((out / "dataset.json").read_text())["splits"]
    assert tfrecord_tools.verify(out).ok
    replaced = write_records(source, out, overwrite=True)  # asked for: now the split goes
    assert list(replaced["splits"]) == ["train"] and not list(out.glob("test.tfrecord-*"))


def test_a_damaged_shard_of_an_unchanged_dataset_is_written_again_and_named(finished, tmp_path, capsys):
    source, out1 = finished
    out = tmp_path / "out"
    shutil.copytree(out1, out)
    shard = sorted(out.glob("train.tfrecord-*"))[0]
    original = shard.read_bytes()
    shard.write_bytes(original[:-10])
    assert main(["write", str(source), str(out), "--workers", "1", "--no-progress", "--num-shards", "1"]) == 0
    assert f"written again from the source: {shard.name}" in capsys.readouterr().out
    assert shard.read_bytes() == original
    assert tfrecord_tools.verify(out).ok


# B2
def test_crash_before_the_first_progress_line_is_finished_by_the_rerun(tmp_path, monkeypatch):
    source = make_class_folder(tmp_path / "src")
    out = tmp_path / "out"
    real_append = out_folder.append_progress

    def disk_full(out_folder, result):
        raise OSError(errno.ENOSPC, "No space left on device", os.path.join(out_folder, "progress"))

    monkeypatch.setattr(out_folder, "append_progress", disk_full)
    with pytest.raises(OSError):
        write_records(source, out, num_shards=2, test_fraction=0)
    assert list(out.glob("train.tfrecord-*"))  # the first shard was renamed into place
    monkeypatch.setattr(out_folder, "append_progress", real_append)
    summary = write_records(source, out, num_shards=2, test_fraction=0)
    assert summary["totals"]["images"] == 15 and tfrecord_tools.verify(out).ok


@pytest.mark.parametrize("name", ["dataset.json", "rejected.jsonl"])
def test_crash_while_writing_the_sidecar_does_not_block_the_rerun(source, tmp_path, monkeypatch, name):
    out = tmp_path / "out"
    real_replace = os.replace

    def crash_on(source_path, target_path):
        if os.path.basename(target_path) == name:
            raise OSError(28, "No space left on device (simulated)")
        return real_replace(source_path, target_path)

    monkeypatch.setattr(os, "replace", crash_on)
    with pytest.raises(OSError, match="simulated"):
        write_records(source, out, num_shards=1)
    monkeypatch.setattr(os, "replace", real_replace)
    leftovers = [item for item in os.listdir(out) if name in item]
    assert leftovers and all(item.startswith(INCOMPLETE_PREFIX) for item in leftovers)
    summary = write_records(source, out, num_shards=1)
    assert summary["shards_reused"] == 2
    assert not [item for item in os.listdir(out) if item.startswith(".")]
    assert tfrecord_tools.verify(out).ok


def test_killed_in_the_middle_then_resumed(source, tmp_path):
    """SIGKILL after the first shard is finished; the re-run keeps it and completes."""
    out = tmp_path / "out"
    process = start_slow_write(source, out, tmp_path / "slow", 0.1, "--workers", "1", "--num-shards", "3",
                               "--test-fraction", "0")
    progress = out / PROGRESS_NAME
    wait_until(lambda: progress.exists() and progress.read_text().count('"file"') >= 1, process)
    time.sleep(0.15)  # well into the second shard (5 records x 0.1 s each)
    process.send_signal(signal.SIGKILL)
    process.communicate()

    names = sorted(os.listdir(out))
    finished = [name for name in names if SHARD_NAME_PATTERN.match(name)]
    assert finished and "dataset.json" not in names
    assert any(name.startswith(INCOMPLETE_PREFIX) for name in names)  # the shard being written
    for name in finished:  # every shard with a final name is whole
        assert len(read_records(out / name)) == 5
    kept = {name: (out / name).stat() for name in finished}
    with pytest.raises(tfrecord_tools.SidecarError, match="interrupted"):
        tfrecord_tools.verify(out)

    summary = write_records(source, out, num_shards=3, test_fraction=0.0)
    assert summary["shards_reused"] == len(finished) and summary["shards_written"] == 3 - len(finished)
    for name, before in kept.items():
        after = (out / name).stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert not any(name.startswith(".") for name in os.listdir(out))
    assert tfrecord_tools.verify(out).records_checked == 15


# N3
def test_an_output_folder_inside_a_linked_class_folder_is_refused(tmp_path):
    source = make_class_folder(tmp_path / "src", classes=("dog",), per_class=2)
    photos = make_class_folder(tmp_path / "data", classes=("cat",), per_class=2) / "cat"
    os.symlink(photos, source / "cat")  # SRC/cat -> /data/cat, and OUT /data/cat/records
    before = sorted(os.listdir(photos))
    with pytest.raises(tfrecord_tools.OutputFolderError,
                       match=r"is inside the class folder .*/src/cat: .*/data/cat is that folder, reached through a "
                             r"symbolic link or a mount"):
        write_records(source, photos / "records")
    assert sorted(os.listdir(photos)) == before  # nothing written among the photos


# N3
def test_an_output_folder_inside_a_bind_mounted_source_is_refused(tmp_path, bind_mount):
    photos = make_class_folder(tmp_path / "data" / "photos", per_class=2)
    source = tmp_path / "mnt" / "photos"
    source.mkdir(parents=True)
    bind_mount(photos, source)
    with pytest.raises(tfrecord_tools.OutputFolderError, match=r"is inside the source folder .*/mnt/photos"):
        write_records(source, photos / "records")
    assert sorted(os.listdir(photos)) == ["cat", "dog", "fox"]  # no empty class "records" either


# N3
def test_the_output_folder_reached_through_a_link_below_a_class_folder_is_never_read(tmp_path):
    source = make_class_folder(tmp_path / "src", per_class=2)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, source / "cat" / "more")
    out = elsewhere / "records"
    first = write_records(source, out, test_fraction=0)
    tfrecord_tools.contact_sheet(out, out / "contact_sheet.png")  # a PNG below SRC/cat, seen through the link
    again = write_records(source, out, test_fraction=0)
    assert again["totals"]["images"] == 6 and again["shards_reused"] == first["totals"]["shards"]
    assert rejected_lines(out)["cat/more/records"]["category"] == "output_folder"


# N9
def test_a_rerun_says_when_only_the_recorded_plan_digest_differs(finished, tmp_path):
    source, finished_out = finished
    out = tmp_path / "out"
    shutil.copytree(finished_out, out)
    content = json.loads((out / "dataset.json").read_text())
    shard = content["splits"]["train"]["shards"][0]
    shard["plan_sha256"] = ("1" if shard["plan_sha256"][0] != "1" else "2") + shard["plan_sha256"][1:]  # one edit
    (out / "dataset.json").write_text(json.dumps(content))
    assert tfrecord_tools.verify(out, workers=1).ok  # a digest of the right shape: verify cannot tell
    with pytest.raises(tfrecord_tools.OutputFolderError) as refused:
        write_records(source, out, num_shards=1)
    message = str(refused.value)
    assert f"records other plan digests (plan_sha256) for {shard['file']}: dataset.json was changed" in message
    assert "other inputs" not in message
