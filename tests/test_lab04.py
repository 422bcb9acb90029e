"""Smoke test: lab04_pipeline.py runs top to bottom on the stand-in with tiny settings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = ("comparison.txt", "batch_sizes.png", "shuffle_repeat.png", "timeline_test.png", "timeline_test_batch.png",
           "timeline_naive.png", "timeline_optimized.png",
           "practical_batch.png")


def _run(*arguments, timeout=240):
    return subprocess.run([sys.executable, "lab04_pipeline.py", *arguments], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_lab04_runs_on_the_standin(tmp_path):
    result = _run("--data", "standin", "--epochs", "1", "--limit", "256", "--out", str(tmp_path))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "lab04 | naive_s=" in result.stdout.strip().splitlines()[-1]
    assert "| speedup=" in result.stdout.strip().splitlines()[-1]

    comparison = (tmp_path / "comparison.txt").read_text()
    assert "naive" in comparison and "optimized" in comparison
    for name in OUTPUTS[1:]:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert (tmp_path / "initial.weights.h5").stat().st_size > 1_000_000  # 1,068,810 float32 weights
    assert not list(tmp_path.glob(".*partial*"))

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["data"]["is_standin"] is True
    assert [row["pipeline"] for row in metrics["comparison"]] == ["naive", "optimized"]
    for row in metrics["comparison"]:
        assert row["total_s"] > 0 and row["images_per_s"] > 0
        assert 0.0 <= row["test_accuracy"] <= 1.0 and 0.0 <= row["input_wait_share"] < 1.0
    for name, run in metrics["runs"].items():
        stages = run["timeline"]["stages"]
        assert {"Open", "Read", "Map", "Wait", "Train", "Test", "Epoch"} <= set(stages), name
        assert stages["Train"]["count"] == 5 and stages["Epoch"]["count"] == 1  # 5 files x 64 rows // batch 64
    # The written image folder holds 20 PNGs per class, read back by both file pipelines.
    assert len(list((tmp_path / "image_folder").glob("*/*.png"))) == 200
    assert set(metrics["practical_images_per_second"]) == {"in_memory", "list_files",
                                                           "image_dataset_from_directory"}


@pytest.mark.slow
def test_lab04_explains_a_folder_without_cifar10(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _run("--data-dir", str(empty), "--out", str(tmp_path / "out"), timeout=120)
    assert result.returncode == 2
    assert "holds no CIFAR-10" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "metrics.json").exists()


ROWS_PER_FILE = 150  # not CIFAR-10's 10,000: the step counts must come from the files


def _write_batches(folder, rows=ROWS_PER_FILE):
    """Tiny pickled batches in the real cifar-10-batches-py layout (random pixels)."""
    import pickle

    import numpy as np

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{number}" for number in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, size=(rows, 3072), dtype=np.uint8),
                 b"labels": [index % 10 for index in range(rows)]}
        (folder / name).write_bytes(pickle.dumps(batch))
    return folder


@pytest.mark.slow
def test_lab04_a_truncated_batch_file_fails_up_front_without_deleting_advice(tmp_path):
    data = _write_batches(tmp_path / "cifar-10-batches-py")
    good = (data / "data_batch_2").read_bytes()
    (data / "data_batch_2").write_bytes(good[: len(good) // 3])
    result = _run("--data-dir", str(data), "--epochs", "1", "--out", str(tmp_path / "out"), timeout=120)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "data_batch_2" in result.stderr and "your data folder" in result.stderr
    assert "delete" not in result.stderr.lower()  # never advise deleting the user's own data
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "metrics.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize("flag", ["--practical-batches", "--shuffle-buffer"])
def test_lab04_refuses_a_count_below_one_before_any_work(tmp_path, flag):
    result = _run("--data", "standin", flag, "0", "--out", str(tmp_path / "out"), timeout=120)
    assert result.returncode == 2
    assert flag in result.stderr and "positive whole number" in result.stderr
    assert not (tmp_path / "out" / "metrics.json").exists()


@pytest.mark.slow
def test_lab04_default_cache_runs_the_map_every_epoch_and_counts_the_rows(tmp_path):
    data = _write_batches(tmp_path / "cifar-10-batches-py")
    (data / "train" / "not_a_class").mkdir(parents=True)  # the practical demo must not label it class 0
    out = tmp_path / "out"
    result = _run("--data-dir", str(data), "--pipelines", "optimized", "--epochs", "2", "--practical-batches", "1",
                  "--out", str(out))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["settings"]["cache"] == "before-map"
    assert metrics["data"]["train_rows"] == 5 * ROWS_PER_FILE and metrics["data"]["test_rows"] == ROWS_PER_FILE
    stages = metrics["runs"]["optimized"]["timeline"]["stages"]
    # The cache holds the decoded images: Open and Read in epoch 1 only, the random Map in both.
    assert stages["Map"]["epochs"] == [0, 1]
    assert stages["Open"]["epochs"] == stages["Read"]["epochs"] == [0]
    assert stages["Train"]["count"] == 2 * (5 * ROWS_PER_FILE // 64)
    assert stages["Teardown"]["count"] == 2
    assert metrics["comparison"][0]["pipeline_stages_after_epoch_1"] == ["Map"]
    assert "recorded after epoch 1: ['Map']" in result.stdout
    run = metrics["runs"]["optimized"]
    assert run["teardown_seconds"] >= 0 and run["tracing_seconds"] >= 0
    assert "Teardown (deleting the epochs' finished iterators)" in result.stdout
    assert "unknown: ['not_a_class']" in result.stdout and "writing a folder of PNGs instead" in result.stdout
    assert set(metrics["practical_images_per_second"]) == {"in_memory", "list_files", "image_dataset_from_directory"}
