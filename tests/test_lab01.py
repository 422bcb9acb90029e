"""lab01_mnist.py end to end, as a student runs it, on tiny settings."""

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO_ROOT
from fakes import write_idx_folder


def run_script(*arguments, timeout=300):
    return subprocess.run(
        [sys.executable, "lab01_mnist.py", *arguments], cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=timeout,
    )


@pytest.mark.slow
def test_lab01_runs_on_the_standin_and_writes_its_outputs(tmp_path):
    result = run_script("--data", "standin", "--epochs", "1", "--limit", "600", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OFFLINE STAND-IN" in result.stdout
    for name in ("sample_digits.png", "training_curves.png", "predictions.png", "metrics.json"):
        assert (tmp_path / name).stat().st_size > 1000, name
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["data"]["is_standin"] is True and metrics["data"]["train_images"] == 600
    assert metrics["softmax_regression"]["parameters"] == 7850
    assert metrics["cnn"]["parameters"] == 93322
    assert 0.0 <= metrics["cnn"]["test_accuracy"] <= 1.0
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.startswith("lab01 mnist (stand-in) | softmax_accuracy=")


@pytest.mark.slow
def test_lab01_reads_idx_files_from_data_dir(tmp_path):
    rng = np.random.default_rng(0)
    arrays = (rng.integers(0, 256, (60, 28, 28)), np.arange(60) % 10,
              rng.integers(0, 256, (20, 28, 28)), np.arange(20) % 10)
    write_idx_folder(tmp_path / "data", arrays)
    result = run_script("--data", "real", "--data-dir", str(tmp_path / "data"), "--epochs", "1",
                        "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["data"]["is_standin"] is False and metrics["data"]["test_images"] == 20
    assert "IDX files" in metrics["data"]["source"]


def test_lab01_real_data_offline_fails_fast_with_instructions(tmp_path):
    started = time.perf_counter()
    result = run_script("--data", "real", "--out", str(tmp_path), timeout=120)
    assert result.returncode == 2
    assert "mnist is not available" in result.stderr and "--data-dir" in result.stderr
    assert "Traceback" not in result.stderr
    assert time.perf_counter() - started < 60


def test_lab01_help_lists_the_shared_flags():
    result = run_script("--help", timeout=120)
    assert result.returncode == 0
    for flag in ("--epochs", "--batch-size", "--data", "--data-dir", "--limit", "--out", "--seed", "--dataset"):
        assert flag in result.stdout
