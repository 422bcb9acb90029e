"""Smoke runs of lab02_cifar_baselines.py on the offline CIFAR-10 stand-in."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = "lab02_cifar_baselines.py"


def run_script(*arguments, out):
    return subprocess.run(
        [sys.executable, SCRIPT, "--data", "standin", "--out", str(out), *arguments],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )


@pytest.mark.slow
def test_runs_on_the_standin_and_writes_every_output(tmp_path):
    result = run_script("--limit", "256", "--svm", "both", out=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    for name in ("grayscale.png", "hog_cells.png", "confusion_knn.png", "confusion_linear_svm.png",
                 "confusion_lab_svc.png"):
        with Image.open(tmp_path / name) as image:
            assert image.format == "PNG" and image.width > 200 and image.height > 200, name
    assert not list(tmp_path.glob(".*partial"))

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["data"]["is_standin"] is True
    assert metrics["data"]["train_images"] == 256
    test_images = metrics["data"]["test_images"]
    assert metrics["hog"]["feature_length"] == 288
    assert metrics["hog"]["images"] == 256 + test_images
    assert set(metrics["classifiers"]) == {"knn", "linear_svm", "lab_svc"}
    for classifier in metrics["classifiers"].values():
        assert 0 <= classifier["accuracy"] <= 1
        assert classifier["misclassified"] == round((1 - classifier["accuracy"]) * test_images)
        assert classifier["seconds"] >= classifier["fit_seconds"] >= 0
    # The stand-in's shapes are easy to tell apart from their edges: well above chance.
    assert metrics["classifiers"]["knn"]["accuracy"] > 0.2
    assert "command" in metrics["run"]

    summary = result.stdout.strip().splitlines()[-1]
    assert summary.startswith("lab02 | hog_s=") and "knn_accuracy=" in summary
    assert "Misclassified samples:" in result.stdout


@pytest.mark.slow
def test_too_small_a_training_set_is_a_clear_error(tmp_path):
    result = run_script("--limit", "8", out=tmp_path)
    assert result.returncode == 2
    assert "raise --limit" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "metrics.json").exists()
