"""assignment_wildlife.py run as a subprocess on its generated stand-in, with tiny settings.

One module-scoped run with all four pipelines (1 epoch, 64 px images) feeds the
output checks; a second run (optimized pipeline only, more epochs) checks that the
fixed loss learns and that the same seed gives the same split.
"""

import csv
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = "assignment_wildlife.py"
PIPELINES = ("naive", "augmentation", "optimized", "tfrecord")
LIMIT = 160
TINY = ["--data", "standin", "--limit", str(LIMIT), "--image-size", "64", "--crop-size", "48",
        "--batch-size", "16", "--workers", "1"]


def run_script(out, *arguments, keras_home=None, timeout=300):
    environment = None if keras_home is None else {**os.environ, "KERAS_HOME": str(keras_home)}
    return subprocess.run([sys.executable, SCRIPT, *arguments, "--out", str(out)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout, env=environment)


def read_csv(path):
    with open(path, newline="") as csv_file:
        rows = list(csv.DictReader(csv_file))
    return [row["img_path"] for row in rows], [int(row["label"]) for row in rows]


@pytest.fixture(scope="module")
def keras_home(tmp_path_factory):
    """One Keras cache for the module, so the stand-in photos are generated once."""
    return tmp_path_factory.mktemp("assignment_keras_home")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, keras_home):
    out = tmp_path_factory.mktemp("assignment_smoke")
    result = run_script(out, *TINY, "--epochs", "1", keras_home=keras_home)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out, result


@pytest.mark.slow
def test_writes_every_output(smoke_run):
    out, result = smoke_run
    expected = ["train.csv", "test.csv", "samples.png", "augmentation_examples.png", "results.md", "analysis.md",
                "metrics.json", "initial.weights.h5", "tfrecords/dataset.json"]
    expected += [f"timeline_{name}.png" for name in PIPELINES]
    for name in expected:
        path = out / name
        assert path.is_file() and path.stat().st_size > 0, name
    for name in [name for name in expected if name.endswith(".png")]:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert "OFFLINE STAND-IN" in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("assignment_wildlife | naive_s=")
    assert not list(out.glob(".*partial*"))  # no half-written file left behind

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"]["is_standin"] is True
    assert metrics["config"]["pipelines"] == list(PIPELINES)
    for name in PIPELINES:
        result_row = metrics["results"][name]
        assert len(result_row["epochs"]) == 1
        assert 0.0 <= result_row["test_accuracy"] <= 1.0
        assert result_row["images_per_second"] > 0
        assert 0.0 <= result_row["input_wait_share"] <= 1.0
    # The naive pipeline reads and maps in Python: its timeline has Read and Map spans.
    assert {"Read", "Map", "Train", "Test", "Epoch"} <= set(metrics["results"]["naive"]["stages"])
    assert "Decode" in metrics["results"]["optimized"]["stages"]
    # The two broken files of the stand-in are dropped, each with a reason.
    rejected = {Path(item["path"]).name: item["reason"] for item in metrics["data"]["rejected"]}
    assert {"broken_truncated.jpg", "broken_not_an_image.jpg"} <= set(rejected)

    analysis = (out / "analysis.md").read_text()
    for heading in ("## Bottleneck", "## Augmentation and accuracy", "## What the optimisations did to time",
                    "## What TFRecords did to time"):
        assert heading in analysis
    assert "| naive |" in analysis and "| tfrecord |" in analysis
    assert analysis.strip() in result.stdout


@pytest.mark.slow
def test_split_is_stratified_and_matches_csv_and_tfrecords(smoke_run):
    out, _ = smoke_run
    metrics = json.loads((out / "metrics.json").read_text())
    class_names = metrics["data"]["class_names"]
    train_paths, train_labels = read_csv(out / "train.csv")
    test_paths, test_labels = read_csv(out / "test.csv")
    assert len(train_paths) == LIMIT == metrics["data"]["train_images"]
    assert len(test_paths) == metrics["data"]["test_images"]
    assert not set(train_paths) & set(test_paths)
    for paths, labels in ((train_paths, train_labels), (test_paths, test_labels)):
        for path, label in zip(paths, labels, strict=True):
            assert Path(path).is_file()
            assert Path(path).parent.name == class_names[label]  # label map from sorted class names
    # Stratified: every class has its share in both halves (the stand-in is balanced).
    train_counts, test_counts = Counter(train_labels), Counter(test_labels)
    assert set(train_counts) == set(test_counts) == set(range(len(class_names)))
    assert max(train_counts.values()) - min(train_counts.values()) <= 1
    assert max(test_counts.values()) - min(test_counts.values()) <= 1
    # The TFRecords hold exactly the same split.
    sidecar = json.loads((out / "tfrecords" / "dataset.json").read_text())
    assert sidecar["label_to_index"] == {name: index for index, name in enumerate(class_names)}
    for split, labels in (("train", train_labels), ("test", test_labels)):
        expected = {class_names[label]: count for label, count in Counter(labels).items()}
        assert sidecar["splits"][split]["images"] == len(labels)
        assert sidecar["splits"][split]["class_counts"] == expected


@pytest.mark.slow
def test_fixed_loss_learns_and_split_is_seeded(smoke_run, tmp_path, keras_home):
    """The lab's loss (from_logits=True on softmax) stays at chance; ours must learn the easy stand-in."""
    out = tmp_path / "learn"
    result = run_script(out, *TINY, "--pipelines", "optimized", "--epochs", "8", keras_home=keras_home)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    accuracy = metrics["results"]["optimized"]["test_accuracy"]
    assert accuracy >= 0.5, f"test accuracy {accuracy} on an easy 10-class set (chance 0.1)"
    losses = [row["train_loss"] for row in metrics["results"]["optimized"]["epochs"]]
    assert losses[-1] < losses[0]
    # Same seed and --limit: the same split, file for file, as the smoke run.
    smoke_out, _ = smoke_run
    for name in ("train.csv", "test.csv"):
        assert (out / name).read_text() == (smoke_out / name).read_text()


@pytest.mark.slow
def test_vgg16_offline_fails_fast_with_instructions(tmp_path):
    result = run_script(tmp_path / "out", "--data", "standin", "--backbone", "vgg16", timeout=120)
    assert result.returncode == 2
    message = result.stderr
    assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert "--weights none" in message
    assert "Traceback" not in message
    assert not (tmp_path / "out" / "metrics.json").exists()



def _write_photos(folder, names, seed):
    """Small random-noise JPEGs (distinct bytes) at ``folder/<name>``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, size=(72, 80, 3), dtype=np.uint8)).save(path, quality=90)


SMALL = ["--image-size", "64", "--crop-size", "48", "--batch-size", "8", "--workers", "1", "--epochs", "1"]


@pytest.mark.slow
def test_labels_come_from_the_class_folder_and_duplicates_are_dropped(tmp_path):
    """A photo in deer/extra/ is a deer (not a class 'extra'); an exact copy never lands in both halves."""
    data = tmp_path / "wildlife"
    for number, class_name in enumerate(("cougar", "deer", "raven")):
        _write_photos(data / class_name, [f"{index}.jpg" for index in range(6)], seed=number)
    _write_photos(data / "deer" / "extra", ["a.jpg", "b.jpg"], seed=9)
    (data / "raven" / "zz_copy.jpg").write_bytes((data / "cougar" / "0.jpg").read_bytes())  # same bytes
    out = tmp_path / "out"
    result = run_script(out, "--data-dir", str(data), "--pipelines", "optimized,tfrecord", *SMALL)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"]["class_names"] == ["cougar", "deer", "raven"]
    assert metrics["data"]["duplicates_dropped"] == 1
    assert metrics["data"]["duplicates"] == [{"path": "raven/zz_copy.jpg", "same_as": "cougar/0.jpg"}]
    assert "exact duplicates dropped: 1" in result.stdout
    paths, labels = [], []
    for name in ("train.csv", "test.csv"):
        split_paths, split_labels = read_csv(out / name)
        paths += split_paths
        labels += split_labels
    assert len(paths) == len(set(paths)) == 3 * 6 + 2  # every photo once, the copy left out
    for path, label in zip(paths, labels, strict=True):
        assert Path(path).relative_to(data).parts[0] == metrics["data"]["class_names"][label]
    assert sum("extra" in Path(path).parts for path in paths) == 2
    sidecar = json.loads((out / "tfrecords" / "dataset.json").read_text())
    assert set(sidecar["label_to_index"]) == {"cougar", "deer", "raven"}
    assert sum(sidecar["splits"][split]["images"] for split in ("train", "test")) == len(paths)


@pytest.mark.slow
def test_a_folder_already_split_keeps_its_split(tmp_path):
    data = tmp_path / "split"
    for number, class_name in enumerate(("cougar", "deer")):
        _write_photos(data / "train" / class_name, [f"{index}.jpg" for index in range(8)], seed=number)
        _write_photos(data / "test" / class_name, [f"{index}.jpg" for index in range(3)], seed=10 + number)
    out = tmp_path / "out"
    result = run_script(out, "--data-dir", str(data), "--pipelines", "tfrecord", *SMALL)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "already split" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"]["layout"] == "splits" and metrics["data"]["class_names"] == ["cougar", "deer"]
    for name, split, count in (("train.csv", "train", 16), ("test.csv", "test", 6)):
        paths, labels = read_csv(out / name)
        assert len(paths) == count
        for path, label in zip(paths, labels, strict=True):
            assert Path(path).relative_to(data).parts[:2] == (split, metrics["data"]["class_names"][label])
    sidecar = json.loads((out / "tfrecords" / "dataset.json").read_text())
    assert sidecar["splits"]["train"]["class_counts"] == {"cougar": 8, "deer": 8}
    assert sidecar["splits"]["test"]["class_counts"] == {"cougar": 3, "deer": 3}


@pytest.mark.slow
def test_bad_shuffle_buffer_is_refused_before_any_work(tmp_path):
    result = run_script(tmp_path / "out", "--data", "standin", "--shuffle-buffer", "0", timeout=120)
    assert result.returncode == 2
    assert "--shuffle-buffer" in result.stderr and "positive whole number" in result.stderr
    assert "Traceback" not in result.stderr
