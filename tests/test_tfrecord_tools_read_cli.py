"""Tests of tfrecord_tools' reading side (tf.data) and its command line.

The command line runs as a subprocess, as a user would run it; the reading
tests compare what ``load`` yields with the files that went in.
"""

import hashlib
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_tfrecord_tools import image_bytes, make_class_folder, write, write_file

import tfrecord_tools

tf = pytest.importorskip("tensorflow")
REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """3 classes x 6 images of 16x12, 2 shards per split; returns (source, out)."""
    root = tmp_path_factory.mktemp("read")
    source = make_class_folder(root / "src", per_class=6)
    tfrecord_tools.write_dataset(source, root / "out", num_shards=2, test_fraction=1 / 3, workers=1)
    return source, root / "out"


def digest(image):
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()


def source_pixels(source):
    """{sha256 of decoded pixels: label} for every source JPEG, decoded by TensorFlow."""
    labels = {"cat": 0, "dog": 1, "fox": 2}
    return {
        digest(tf.io.decode_jpeg(path.read_bytes(), channels=3).numpy()): labels[path.parent.name]
        for path in sorted(source.glob("*/*.jpg"))
    }


def test_load_yields_every_image_with_its_label(written):
    source, out = written
    expected = source_pixels(source)
    seen = {}
    for split in ("train", "test"):
        dataset = tfrecord_tools.load(out, split, batch_size=4, shuffle=False)
        assert dataset.cardinality().numpy() == (3 if split == "train" else 2)
        for images, labels in dataset:
            assert images.dtype == tf.uint8 and images.shape[1:] == (12, 16, 3)
            for image, label in zip(images.numpy(), labels.numpy(), strict=True):
                seen[digest(image)] = int(label)
    assert seen == expected


def test_load_crops_resizes_and_scales(written):
    _, out = written
    dataset = tfrecord_tools.load(out, "train", batch_size=None, crop="center", image_size=(8, 8), dtype="float32")
    image, label = next(iter(dataset))
    assert image.shape == (8, 8, 3) and image.dtype == tf.float32
    assert 0.0 <= float(tf.reduce_min(image)) and float(tf.reduce_max(image)) <= 1.0
    cropped = tfrecord_tools.load(out, "train", batch_size=2, crop=(2, 3, 5, 6), shuffle=False)
    assert next(iter(cropped))[0].shape == (2, 5, 6, 3)
    center = tfrecord_tools.load(out, "train", batch_size=2, crop="center")
    assert next(iter(center))[0].shape == (2, 12, 12, 3)


def test_input_pipelines_split_the_shards_without_overlap(written):
    _, out = written
    parts = []
    for index in range(2):
        dataset = tfrecord_tools.load(out, "train", batch_size=None, num_input_pipelines=2, input_pipeline_id=index)
        parts.append({digest(image.numpy()) for image, _ in dataset})
    assert not parts[0] & parts[1] and len(parts[0] | parts[1]) == 12
    with pytest.raises(ValueError, match="only 2 shard"):
        tfrecord_tools.load(out, "train", num_input_pipelines=3)


def test_shuffled_and_cached_epochs_hold_the_same_images(written):
    _, out = written
    dataset = tfrecord_tools.load(out, "train", batch_size=None, shuffle=True, seed=1, cache=True)
    epochs = [[digest(image.numpy()) for image, _ in dataset] for _ in range(2)]
    assert sorted(epochs[0]) == sorted(epochs[1]) and len(epochs[0]) == 12
    assert epochs[0] != epochs[1]  # reshuffled each epoch, from the cache


def test_reading_options_change_speed_not_contents(written):
    """``parallel_reads`` and ``autotune`` are performance switches only; the
    autotuner is off unless asked for (it left a core idle on small machines)."""
    _, out = written
    default = tfrecord_tools.load(out, "train", batch_size=None, shuffle=False)
    assert default.options().autotune.enabled is False
    contents = [digest(image.numpy()) for image, _ in default]
    for options in ({"parallel_reads": True}, {"autotune": True}):
        dataset = tfrecord_tools.load(out, "train", batch_size=None, shuffle=False, **options)
        assert [digest(image.numpy()) for image, _ in dataset] == contents  # same order too: deterministic
    assert tfrecord_tools.load(out, "train", autotune=True).options().autotune.enabled is True


def test_parse_example_gives_every_feature(written):
    _, out = written
    records = tf.data.TFRecordDataset(tfrecord_tools.shard_files(out, "test"))
    features = next(iter(records.map(tfrecord_tools.parse_example)))
    assert set(features) == set(tfrecord_tools.FEATURES)
    image = tfrecord_tools.decode_image(features)
    assert image.shape == (int(features["image/height"]), int(features["image/width"]), 3)
    assert features["image/format"].numpy() == b"jpeg"


def test_load_refuses_mixed_sizes_without_image_size(tmp_path):
    source = make_class_folder(tmp_path / "src", classes=("a", "b"), per_class=2)
    write_file(source / "a" / "wide.jpg", image_bytes(size=(40, 10), seed=9))
    write(source, tmp_path / "out", test_fraction=0)
    with pytest.raises(ValueError, match="image_size"):
        tfrecord_tools.load(tmp_path / "out", "train")
    images, _ = next(iter(tfrecord_tools.load(tmp_path / "out", "train", batch_size=5, image_size=(10, 10))))
    assert images.shape == (5, 10, 10, 3)


def test_load_unknown_split_and_unfinished_shards(written, tmp_path):
    _, out = written
    with pytest.raises(tfrecord_tools.TFRecordToolsError, match="'validation' is not in"):
        tfrecord_tools.load(out, "validation")
    assert all(".incomplete" not in path for path in tfrecord_tools.shard_files(out, "train"))


# ---------------------------------------------------------------------------
# Command line


def run_cli(*arguments, **options):
    return subprocess.run(
        [sys.executable, "-m", "tfrecord_tools", *map(str, arguments)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, **options,
    )


@pytest.mark.parametrize("command", ["write", "verify", "info"])
def test_each_subcommand_help_shows_an_example(command):
    result = run_cli(command, "--help")
    assert result.returncode == 0
    assert "example:" in result.stdout and f"python -m tfrecord_tools {command}" in result.stdout


def test_cli_write_verify_info_round_trip(tmp_path):
    source = make_class_folder(tmp_path / "src", per_class=4)
    write_file(source / "cat" / "broken.jpg", b"\xff\xd8\xff\xe0 cut short")
    out = tmp_path / "out"
    written = run_cli("write", source, out, "--workers", "2", "--num-shards", "2", "--no-progress")
    assert written.returncode == 0, written.stderr
    assert "12 images in 4 shards" in written.stdout and "1 rejected" in written.stdout
    assert "images/s" in written.stdout
    verified = run_cli("verify", out)
    assert verified.returncode == 0 and verified.stdout.strip().splitlines()[-1].startswith("OK: 12 records")
    info = run_cli("info", out, "--contact-sheet", out / "contact_sheet.png", "--per-class", "2")
    assert info.returncode == 0 and "fox" in info.stdout
    assert Image.open(out / "contact_sheet.png").format == "PNG"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("write", "{tmp}/missing", "{tmp}/out"), "does not exist"),
        (("write", "{tmp}/flat", "{tmp}/out"), "holds no class folders"),
        (("verify", "{tmp}"), "dataset.json is missing"),
        (("info", "{tmp}/missing"), "is not a folder"),
    ],
)
def test_cli_bad_input_is_one_clear_line(tmp_path, arguments, message):
    write_file(tmp_path / "flat" / "a.jpg", image_bytes())
    result = run_cli(*(argument.format(tmp=tmp_path) for argument in arguments))
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr


def test_cli_bad_arguments_exit_2(tmp_path):
    result = run_cli("write", tmp_path, tmp_path / "out", "--test-fraction", "1.5")
    assert result.returncode == 2 and "expected a number in [0, 1)" in result.stderr


def test_cli_verify_failure_names_shard_and_record(written, tmp_path):
    _, original = written
    out = tmp_path / "copy"
    out.mkdir()
    for path in original.iterdir():
        (out / path.name).write_bytes(path.read_bytes())
    shard = out / "train.tfrecord-00000-of-00002"
    data = bytearray(shard.read_bytes())
    data[-5] ^= 0xFF  # inside the last record's image bytes
    shard.write_bytes(bytes(data))
    result = run_cli("verify", out)
    assert result.returncode == 1
    assert "train.tfrecord-00000-of-00002 record 5" in result.stdout and "FAILED" in result.stdout


@pytest.mark.slow
def test_worker_pool_from_a_script_without_main_guard_after_tensorflow(tmp_path):
    """Lab scripts are top-level code: spawned workers would run them again, so one process is used, with a warning."""
    make_class_folder(tmp_path / "src", per_class=100, size=(8, 8))  # > 1 chunk, so the pool would be used
    script = tmp_path / "lab_like.py"
    script.write_text(textwrap.dedent(f"""
        import tensorflow as tf
        import tfrecord_tools
        tf.constant(1.0) + 1.0  # TensorFlow's thread pools are running now
        print("script body ran")
        summary = tfrecord_tools.write_dataset({str(tmp_path / 'src')!r}, {str(tmp_path / 'out')!r}, workers=2)
        print(tfrecord_tools.format_summary(summary))
        print(tfrecord_tools.verify({str(tmp_path / 'out')!r}, workers=2).format())
    """))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("script body ran") == 1
    assert "300 images in" in result.stdout and "OK: 300 records" in result.stdout
    assert "1 process is used" in result.stderr and "python -m tfrecord_tools write" in result.stderr


def test_script_with_a_main_guard_uses_its_workers(tmp_path):
    make_class_folder(tmp_path / "src", per_class=100, size=(8, 8))
    script = tmp_path / "guarded.py"
    script.write_text(textwrap.dedent(f"""
        import multiprocessing, warnings
        import tfrecord_tools
        print("script body ran")

        def main():
            warnings.simplefilter("error")  # the fallback warning would fail the run
            summary = tfrecord_tools.write_dataset({str(tmp_path / 'src')!r}, {str(tmp_path / 'out')!r}, workers=2)
            print(tfrecord_tools.format_summary(summary))

        if __name__ == "__main__":
            main()
    """))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert result.returncode == 0, result.stderr[-2000:]
    # Each spawned worker imports the script as __mp_main__ (its guarded part does not run).
    assert result.stdout.count("script body ran") >= 2 and "300 images in" in result.stdout


def test_cli_write_does_not_import_tensorflow(tmp_path):
    source = make_class_folder(tmp_path / "src", per_class=2)
    code = (
        "import sys; from tfrecord_tools.__main__ import main; "
        f"main(['write', {str(source)!r}, {str(tmp_path / 'out')!r}, '--workers', '1', '--no-progress']); "
        "main(['verify', " + repr(str(tmp_path / "out")) + "]); print('tensorflow' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert result.stdout.strip().splitlines()[-1] == "False", result.stderr


def test_decoded_bytes_match_pillow(written):
    """TensorFlow's decoder and Pillow (used by verify) agree on the stored JPEGs."""
    _, out = written
    records = tf.data.TFRecordDataset(tfrecord_tools.shard_files(out, "train")).map(tfrecord_tools.parse_example)
    for features in records.take(3):
        encoded = features["image/encoded"].numpy()
        ours = np.asarray(Image.open(io.BytesIO(encoded)).convert("RGB"))
        # TensorFlow's default IDCT (INTEGER_FAST) differs from libjpeg's ISLOW by a few levels on noise.
        assert np.abs(tf.io.decode_jpeg(encoded, channels=3).numpy().astype(int) - ours).max() <= 8


def test_ctrl_c_stops_cleanly_and_the_same_command_finishes(tmp_path):
    """SIGINT to the whole process group (as a terminal sends it): one line, exit 130, no traceback."""
    import signal
    import time

    source = make_class_folder(tmp_path / "src", per_class=4)
    out = tmp_path / "out"
    arguments = [sys.executable, "-m", "tfrecord_tools", "write", str(source), str(out), "--workers", "2",
                 "--num-shards", "2", "--no-progress"]
    process = subprocess.Popen(arguments, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO_ROOT),
                                    "TFRECORD_TOOLS_TEST_RECORD_DELAY": "0.2"},
                               start_new_session=True)
    deadline = time.monotonic() + 60
    while not (out.exists() and any(name.startswith(".incomplete-") for name in os.listdir(out))):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    finished = run_cli("write", source, out, "--workers", "1", "--num-shards", "2", "--no-progress")
    assert finished.returncode == 0, finished.stderr
    assert run_cli("verify", out).returncode == 0


# ---------------------------------------------------------------------------
# Review findings: each a test that failed before its fix


def test_every_stored_jpeg_decodes_in_tensorflow(tmp_path):
    """A JPEG without its end-of-image marker passes Pillow; stored as is, it failed tf.io.decode_jpeg mid-epoch."""
    from test_tfrecord_tools import jpeg_without_end_marker, read_records

    source = make_class_folder(tmp_path / "src", classes=("a", "b"), per_class=3)
    cut = jpeg_without_end_marker()
    whole = image_bytes(size=(16, 12), seed=7)
    write_file(source / "a" / "no_end_marker.jpg", cut)
    write_file(source / "a" / "zeros_for_end_marker.jpg", whole[:-2] + b"\x00" * 64)  # data whole, marker zeroed
    write_file(source / "b" / "cut_and_padded.jpg", whole[: len(whole) * 2 // 3] + b"\x00" * 200)
    write_file(source / "b" / "padded_after_end.jpg", whole + b"\x00" * 64)  # TensorFlow reads this one
    out = tmp_path / "out"
    write(source, out, test_fraction=0)
    records = {}
    for shard in tfrecord_tools.shard_files(out, "train"):
        for features in read_records(shard):
            encoded = features["image/encoded"][0]
            image = tf.io.decode_jpeg(encoded, channels=3)  # raised "Invalid JPEG data" before the fix
            assert image.shape == (features["image/height"][0], features["image/width"][0], 3)
            records[features["image/filename"][0].decode()] = features
    assert records["a/no_end_marker.jpg"]["image/reencoded"] == [1]
    assert records["a/zeros_for_end_marker.jpg"]["image/reencoded"] == [1]
    assert records["b/padded_after_end.jpg"]["image/reencoded"] == [0]
    assert "b/cut_and_padded.jpg" not in records
    rejected = (out / "rejected.jsonl").read_text()
    assert "b/cut_and_padded.jpg" in rejected and "truncated" in rejected
    assert tfrecord_tools.verify(out).ok
    assert sum(len(labels) for _, labels in tfrecord_tools.load(out, "train", batch_size=4, image_size=(8, 8))) == 9


def test_load_refuses_a_crop_window_that_does_not_fit(written):
    _, out = written  # images are 12 high, 16 wide
    with pytest.raises(ValueError, match=r"smallest are 12 px high and 16 px wide.*y \+ height must be <= 12"):
        tfrecord_tools.load(out, "train", crop=(2, 0, 11, 16))
    with pytest.raises(ValueError, match="height, width >= 1"):
        tfrecord_tools.load(out, "train", crop=(0, 0, 0, 4))
    with pytest.raises(ValueError, match="y, x >= 0"):
        tfrecord_tools.load(out, "train", crop=(-1, 0, 4, 4))
    images, _ = next(iter(tfrecord_tools.load(out, "train", crop=(0, 0, 12, 16), batch_size=2)))
    assert images.shape == (2, 12, 16, 3)  # the whole image is the largest window


def test_cli_info_json_with_contact_sheet_keeps_stdout_json(written, tmp_path):
    _, out = written
    result = run_cli("info", out, "--json", "--contact-sheet", tmp_path / "contact_sheet.png")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["classes"] == ["cat", "dog", "fox"]
    assert "contact sheet:" in result.stderr
