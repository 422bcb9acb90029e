"""lab03_cifar_cnn.py end to end on the offline stand-in, as a user runs it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
OUTPUT_FILES = [
    "augmented_images.png", "training_curves.png", "confusion_matrix_arrays.png",
    "confusion_matrix_pipeline.png", "predictions.png", "cifar_cnn.keras", "cifar_cnn_pipeline.keras",
    "metrics.json",
]


def run_lab(tmp_path, *flags, timeout=240):
    command = [sys.executable, "lab03_cifar_cnn.py", "--data", "standin", "--epochs", "1", "--out", str(tmp_path),
               *flags]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)


def check_outputs(tmp_path, result):
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for name in OUTPUT_FILES:
        path = tmp_path / name
        assert path.is_file() and path.stat().st_size > 1000, name
    assert not [entry.name for entry in tmp_path.iterdir() if entry.name.startswith(".")], "temporary files left"
    for name in OUTPUT_FILES:
        if name.endswith(".png"):
            assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    summary_lines = [line for line in result.stdout.splitlines() if line.startswith("lab03")]
    assert summary_lines and "arrays_accuracy=" in summary_lines[-1] and "pipeline_images_per_s=" in summary_lines[-1]
    assert "OFFLINE STAND-IN" in result.stdout
    return metrics


@pytest.mark.slow
def test_runs_on_the_standin_and_writes_every_output(tmp_path):
    result = run_lab(tmp_path, "--limit", "512")
    metrics = check_outputs(tmp_path, result)
    assert metrics["data"]["is_standin"] is True and metrics["data"]["train_images"] == 512
    assert metrics["pipeline_data"]["train_images"] == 512
    assert metrics["arrays_model"]["parameters"] == 1_756_938
    assert metrics["pipeline_model"]["parameters"] == 1_068_810
    for model in ("arrays_model", "pipeline_model"):
        assert 0.0 <= metrics[model]["test_accuracy"] <= 1.0
        assert len(metrics[model]["history"]["val_accuracy"]) == 1
        assert len(metrics[model]["train_seconds_per_epoch"]) == 1
        assert metrics[model]["images_per_second"] > 0
    assert metrics["settings"]["pipeline_steps_per_epoch"] == 512 // 64
    assert metrics["settings"]["replicas"] == 1
    assert "tensorflow" in metrics["run"]
    assert "(32, 32, 3)" in result.stdout or "32, 32, 3" in result.stdout
    assert "data_batch_1: rows" in result.stdout


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus_scales_the_global_batch(tmp_path):
    result = run_lab(tmp_path, "--limit", "256", "--strategy", "mirrored", "--cpu-devices", "2",
                     "--no-mixed-precision")
    metrics = check_outputs(tmp_path, result)
    settings = metrics["settings"]
    assert settings["replicas"] == 2
    assert settings["arrays_global_batch_size"] == 2 * 32
    assert settings["pipeline_global_batch_size"] == 2 * 64
    assert settings["pipeline_steps_per_epoch"] == 256 // 128
    assert settings["dtype_policy"] == "float32"
    assert "2 replica(s) on /job:localhost/replica:0/task:0/device:CPU:0, " in result.stdout


@pytest.mark.slow
def test_a_limit_below_one_batch_is_a_clear_error_with_no_outputs(tmp_path):
    result = run_lab(tmp_path, "--limit", "20", timeout=120)
    assert result.returncode == 2
    assert "--limit 20" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "metrics.json").exists()


def test_bad_flags_fail_before_tensorflow_starts(tmp_path):
    result = run_lab(tmp_path, "--pipeline-batch-size", "0", timeout=60)
    assert result.returncode == 2 and "--pipeline-batch-size: expected a positive whole number, got 0" in result.stderr
    result = run_lab(tmp_path, "--cpu-devices", "0", timeout=60)
    assert result.returncode == 2 and "--cpu-devices: expected a positive whole number, got 0" in result.stderr
    result = run_lab(tmp_path, "--strategy", "everywhere", timeout=60)
    assert result.returncode == 2 and "invalid choice" in result.stderr
