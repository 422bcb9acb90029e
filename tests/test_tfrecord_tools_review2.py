"""Tests of tfrecord_tools against the second review: each fails on the version before its fix."""

import json
import shutil

import pytest
from test_tfrecord_tools import make_class_folder, write

import tfrecord_tools
from tfrecord_tools.__main__ import main


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A small finished dataset (train and test), written once for the module."""
    root = tmp_path_factory.mktemp("finished")
    source = make_class_folder(root / "photos", per_class=3)
    write(source, root / "out1", num_shards=1)
    return source, root / "out1"


def test_rerun_refuses_files_merely_named_like_shards(finished, tmp_path):
    source, out1 = finished
    out = tmp_path / "ow6"
    shutil.copytree(out1, out)
    (out / "validation.tfrecord-00000-of-00001").write_text("precious\n")
    (out / "test.tfrecord-00007-of-00009").write_text("precious\n")
    for overwrite in (False, True):
        with pytest.raises(tfrecord_tools.OutputFolderError,
                           match=r"did not write \(test.tfrecord-00007-of-00009, validation.tfrecord-00000-of-00001\)"):
            write(source, out, num_shards=1, overwrite=overwrite)
        assert (out / "validation.tfrecord-00000-of-00001").read_text() == "precious\n"
        assert (out / "test.tfrecord-00007-of-00009").read_text() == "precious\n"


def test_an_unlisted_shard_of_ours_is_still_ours(finished, tmp_path):
    # A shard renamed into place just before a crash is in no list, but holds our records.
    source, out1 = finished
    out = tmp_path / "out"
    shutil.copytree(out1, out)
    shard = next(out.glob("train.tfrecord-*"))
    shutil.copy(shard, out / "validation.tfrecord-00000-of-00001")
    write(source, out, num_shards=1)
    assert not (out / "validation.tfrecord-00000-of-00001").exists()


def test_contact_sheet_never_replaces_a_file_that_is_not_one(finished, tmp_path):
    from tfrecord_tools import info

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


@pytest.mark.parametrize("arguments, expected", [
    (["--val-fraction", "0.5", "--test-fraction", "0.5"], "--test-fraction 0.5 + --val-fraction 0.5 must be below 1"),
    (["--val-fraction", "0.9"], "--test-fraction 0.2 + --val-fraction 0.9 must be below 1"),
    (["--max-side", "100000"], "--max-side: expected at most 65500 pixels"),
])
def test_out_of_range_arguments_are_one_line_usage_errors(tmp_path, capsys, arguments, expected):
    with pytest.raises(SystemExit) as stopped:
        main(["write", str(tmp_path), str(tmp_path / "out"), *arguments])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert expected in error and "Traceback" not in error
    assert not (tmp_path / "out").exists()


def test_a_range_error_the_library_finds_is_a_usage_error_too(tmp_path, capsys, monkeypatch):
    from tfrecord_tools import __main__ as command_line

    monkeypatch.setattr(command_line, "_max_side", int)  # past argparse's check, to the library's own
    with pytest.raises(SystemExit) as stopped:
        main(["write", str(tmp_path), str(tmp_path / "out"), "--max-side", "70000", "--no-progress"])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert "--max-side must be a whole number of pixels in [1, 65500]" in error and "Traceback" not in error
    with pytest.raises(ValueError, match=r"max_side must be"):
        write(tmp_path, tmp_path / "out", max_side=70000)


def test_the_package_version_is_defined_once():
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert project_version_from_setuptools() == tfrecord_tools.__version__


def project_version_from_setuptools():
    import warnings
    from pathlib import Path

    from setuptools.config.pyprojecttoml import read_configuration

    root = Path(__file__).resolve().parents[1]
    with warnings.catch_warnings():  # "[tool.setuptools] in pyproject.toml is still beta"
        warnings.simplefilter("ignore")
        configuration = read_configuration(root / "pyproject.toml", expand=True)
    return configuration["project"]["version"]


@pytest.mark.slow
def test_a_reader_that_stops_early_ends_the_output_quietly(finished):
    import os
    import subprocess
    import sys
    from pathlib import Path

    _, out = finished
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `| head -1` after its line: nobody reads
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    try:
        finished_run = subprocess.run([sys.executable, "-m", "tfrecord_tools", "info", str(out)], stdout=write_end,
                                      stderr=subprocess.PIPE, text=True, env=environment, timeout=120)
    finally:
        os.close(write_end)
    assert finished_run.returncode == 0, finished_run.stderr
    assert finished_run.stderr == ""


def test_a_split_source_with_classes_missing_from_a_split_is_warned_about(tmp_path, capsys):
    from test_tfrecord_tools import image_bytes, write_file

    source = tmp_path / "src"
    for index, (split, name) in enumerate([("train", "a"), ("train", "b"), ("test", "a"), ("test", "c")]):
        write_file(source / split / name / "0.jpg", image_bytes(seed=index))
    assert main(["write", str(source), str(tmp_path / "out"), "--workers", "1", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    expected = ["the train split has no image of 1 class(es) that test has: c",
                "the test split has no image of 1 class(es) that train has: b"]
    for message in expected:
        assert f"warning: {message}" in printed
    assert set(expected) <= set(json.loads((tmp_path / "out" / "dataset.json").read_text())["warnings"])


def test_a_split_source_without_test_folder_says_there_is_no_test_split(tmp_path):
    from test_tfrecord_tools import image_bytes, write_file

    source = tmp_path / "src"
    for index, name in enumerate(["a", "b"]):
        write_file(source / "train" / name / "0.jpg", image_bytes(seed=index))
    summary = write(source, tmp_path / "out")
    assert "test" not in summary["splits"]
    assert any("has no test/ folder" in warning and "no test split" in warning for warning in summary["warnings"])


def test_jpeg_quality_applies_to_every_re_encoding_and_is_recorded(tmp_path):
    import io

    from PIL import Image
    from test_tfrecord_tools import image_bytes, read_records, write_file

    from tfrecord_tools import encode

    source = tmp_path / "src"
    png = image_bytes(format="PNG", size=(64, 48), seed=7)
    for name in ("a", "b"):
        write_file(source / name / "0.png", png)
    stored = {}
    for quality in (None, 40):
        out = tmp_path / f"out{quality}"
        summary = write(source, out, test_fraction=0, num_shards=1, jpeg_quality=quality)
        stored[quality] = read_records(next(out.glob("train.tfrecord-*")))[0]["image/encoded"][0]
        assert summary["jpeg_quality"] == (quality or encode.REENCODE_JPEG_QUALITY)
        assert summary["resize"] is None
    expected = encode.to_rgb_jpeg(Image.open(io.BytesIO(png)), quality=40)
    assert stored[40] == expected and stored[None] != expected
    # The quality is part of the plan: the other quality is no silent re-use of the old shards.
    with pytest.raises(tfrecord_tools.OutputFolderError):
        write(source, tmp_path / "out40", test_fraction=0, num_shards=1, jpeg_quality=60)


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


@pytest.mark.parametrize("options, expected", [
    ({"seed": 1}, "with other settings (seed 0, now 1)"),
    ({"max_side": 8}, "with other settings (max side none, now 8)"),
])
def test_a_rerun_with_another_setting_names_it(finished, tmp_path, options, expected):
    source, out1 = finished
    out = tmp_path / "out"
    shutil.copytree(out1, out)
    with pytest.raises(tfrecord_tools.OutputFolderError) as refused:
        write(source, out, num_shards=1, **options)
    assert expected in str(refused.value)
