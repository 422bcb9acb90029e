"""Smoke test: lab04_pipeline.py runs top to bottom on the stand-in with tiny settings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = ("comparison.txt", "batch_sizes.png", "shuffle_repeat.png", "timeline_naive.png", "timeline_optimized.png",
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
