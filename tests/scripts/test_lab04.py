"""lab04_pipeline.py on the stand-in with tiny settings: outputs, Ctrl-C, kill -9 and resume.

One uninterrupted run serves the output assertions and is the reference for the
interrupted one: Ctrl-C during the naive pipeline, then a re-run killed (SIGKILL)
during the optimized pipeline, then a re-run that must finish with the same files.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fakes import REPO_ROOT

TINY = ("--data", "standin", "--epochs", "2", "--limit", "320", "--practical-batches", "2")
PNGS = ("batch_sizes.png", "shuffle_repeat.png", "timeline_test.png", "timeline_test_batch.png",
        "timeline_naive.png", "timeline_optimized.png", "practical_batch.png")
PARTS = ["naive", "optimized", "in_memory", "list_files", "image_dataset_from_directory"]
# TensorFlow's own start-up lines on stderr (absl, oneDNN, CUDA probing): not the script's.
TENSORFLOW_NOISE = re.compile(r"^(WARNING: All log messages before absl|[IWEF]\d{4} )")


def _run(*arguments, env=None, timeout=240):
    return subprocess.run([sys.executable, "lab04_pipeline.py", *arguments], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout, env=env)


def _start(log: Path, *arguments, env):
    """Start the script in a session of its own (so a signal reaches its whole group, as from a terminal)."""
    handle = open(log, "w")  # closed by the caller, through process.log
    process = subprocess.Popen([sys.executable, "lab04_pipeline.py", *arguments], cwd=REPO_ROOT, env=env,
                               stdout=handle, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    process.log = handle
    return process


def _wait_for(condition, process, what, timeout=180):
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the script ended (status {process.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _parts(out: Path) -> dict:
    try:
        return json.loads((out / "run.json").read_text())["parts"]
    except (OSError, ValueError, KeyError):
        return {}


def _files(out: Path) -> set[str]:
    """The run's outputs (not .resume/, where the starting weights and checkpoints live)."""
    return {str(path.relative_to(out)) for path in out.rglob("*") if path.is_file() and ".resume" not in path.parts}


def _script_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and not TENSORFLOW_NOISE.match(line)]


@pytest.fixture(scope="module")
def keras_home(tmp_path_factory):
    """One empty Keras cache for the module's shared runs (the stand-in batches are written once)."""
    return {**os.environ, "KERAS_HOME": str(tmp_path_factory.mktemp("keras_home"))}


@pytest.fixture(scope="module")
def complete(tmp_path_factory, keras_home):
    out = tmp_path_factory.mktemp("complete")
    result = _run(*TINY, "--out", str(out), env=keras_home)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out, result


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory, keras_home):
    """A run stopped by Ctrl-C during its naive pipeline: (out folder, exit status, output)."""
    out = tmp_path_factory.mktemp("interrupted")
    log = out.parent / "interrupted.log"
    process = _start(log, *TINY, "--out", str(out), env=keras_home)
    _wait_for(lambda: "naive pipeline: 2 epochs" in log.read_text(), process, "the naive pipeline")
    time.sleep(1.0)  # into its first epoch
    os.killpg(process.pid, signal.SIGINT)
    status = process.wait(timeout=60)
    process.log.close()
    return out, status, log.read_text()


@pytest.mark.slow
def test_a_complete_run_writes_every_output_and_marks_the_standin(complete):
    out, result = complete
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.startswith("lab04 (stand-in data) | naive_s=") and "| speedup=" in summary
    comparison = (out / "comparison.txt").read_text()
    assert "naive" in comparison and "optimized" in comparison
    for name in PNGS:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert (out / ".resume" / "weights" / "initial.weights.h5").stat().st_size > 1_000_000  # 1,068,810 weights
    assert not [name for name in _files(out) if "partial" in name]

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "complete" and metrics["resumed_parts"] == []
    assert metrics["parts"] == dict.fromkeys(PARTS, "complete")
    assert metrics["data"]["is_standin"] is True and metrics["data"]["train_rows"] == 320
    assert [row["pipeline"] for row in metrics["comparison"]] == ["naive", "optimized"]
    for row in metrics["comparison"]:
        assert row["total_s"] > 0 and row["images_per_s"] > 0
        assert row["test_accuracy"] == metrics["runs"][row["pipeline"]]["epochs"][-1]["test_accuracy"]
    naive, optimized = metrics["comparison"]
    # One image at a time through Python, nothing prepared ahead: the naive trainer waits far more.
    assert naive["input_wait_share"] > 2 * optimized["input_wait_share"]
    for name, run in metrics["runs"].items():
        stages = run["timeline"]["stages"]
        assert {"Open", "Read", "Map", "Wait", "Train", "Test", "Epoch"} <= set(stages), name
        assert stages["Train"]["count"] == 2 * 5 and stages["Epoch"]["count"] == 2  # 5 files x 64 rows // 64
        assert [row["epoch"] for row in run["epochs"]] == [1, 2]
        assert stages["Teardown"]["count"] == 2 and run["teardown_seconds"] >= 0 and run["tracing_seconds"] >= 0
    # The default cache holds the decoded images: Open and Read in epoch 1 only, the random Map in both.
    stages = metrics["runs"]["optimized"]["timeline"]["stages"]
    assert stages["Map"]["epochs"] == [0, 1] and stages["Open"]["epochs"] == stages["Read"]["epochs"] == [0]
    assert metrics["settings"]["cache"] == "before-map"
    assert [row["pipeline_stages_after_epoch_1"] for row in metrics["comparison"]] == [["Map", "Open", "Read"],
                                                                                      ["Map"]]
    assert "optimized: Open/Read/Map recorded after epoch 1: ['Map']" in result.stdout
    assert "Teardown (freeing the last epoch's finished iterators)" in result.stdout
    assert set(metrics["practical_images_per_second"]) == set(PARTS[2:])
    # The image folder for the file pipelines is data, written once into the cache, not an output.
    assert re.search(r"cached \d+ PNG files of test_batch in .+; later runs reuse it", result.stdout)
    assert set(json.loads((out / "run.json").read_text())["files"]) == _files(out) - {"run.json"}


@pytest.mark.slow
def test_ctrl_c_is_one_line_exit_130_and_marks_the_run_interrupted(interrupted):
    out, status, output = interrupted
    assert status == 130, output[-3000:]
    assert "Traceback" not in output
    lines = [line for line in _script_lines(output) if "interrupted" in line]
    assert len(lines) == 1 and "interrupted by Ctrl-C during naive" in lines[0] and "run the same command" in lines[0]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "interrupted" and metrics["finished_parts"] == []
    assert metrics["running_part"] == "naive"


@pytest.mark.slow
def test_killed_during_optimized_the_rerun_keeps_naive_and_ends_like_an_uninterrupted_run(
        interrupted, complete, keras_home):
    out = interrupted[0]
    log = out.parent / "killed.log"
    process = _start(log, *TINY, "--out", str(out), env=keras_home)
    _wait_for(lambda: _parts(out).get("naive", {}).get("status") == "complete", process, "naive to finish")
    os.killpg(process.pid, signal.SIGKILL)  # now in the optimized pipeline
    process.wait(timeout=60)
    process.log.close()
    assert "resuming the interrupted run" in log.read_text()
    assert json.loads((out / "metrics.json").read_text())["finished_parts"] == ["naive"]
    naive_timeline = (out / "timeline_naive.png").stat().st_mtime_ns

    result = _run(*TINY, "--out", str(out), env=keras_home)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "naive: finished earlier" in result.stdout
    assert "naive pipeline: 2 epochs" not in result.stdout  # not trained again
    assert "optimized pipeline: 2 epochs" in result.stdout
    assert (out / "timeline_naive.png").stat().st_mtime_ns == naive_timeline  # kept, not redrawn
    assert _files(out) == _files(complete[0])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "complete" and metrics["resumed_parts"] == ["naive"]
    assert metrics["parts"] == dict.fromkeys(PARTS, "complete")
    assert {name: [row["epoch"] for row in run["epochs"]] for name, run in metrics["runs"].items()} == {
        "naive": [1, 2], "optimized": [1, 2]}
    assert result.stdout.strip().splitlines()[-1].startswith("lab04 (stand-in data) | naive_s=")


@pytest.mark.slow
def test_help_answers_without_importing_tensorflow():
    probe = ("import runpy, sys; sys.argv = ['lab04_pipeline.py', '--help']\n"
             "try:\n    runpy.run_path('lab04_pipeline.py', run_name='__main__')\n"
             "except SystemExit:\n    pass\nprint('tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--pipelines PIPELINE [PIPELINE ...]" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.slow
def test_lab04_explains_a_folder_without_cifar10(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _run("--data-dir", str(empty), "--out", str(tmp_path / "out"), timeout=120)
    assert result.returncode == 2
    assert "holds no CIFAR-10" in result.stderr and "Traceback" not in result.stderr
    # The data is checked before any work: nothing was written (an older run there would be untouched).
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
    assert "data_batch_2" in result.stderr and "expected a pickled dict" in result.stderr
    assert "delete" not in result.stderr.lower()  # never advise deleting the user's own data
    assert "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize(("flags", "message"), [
    (("--practical-batches", "0"), "positive whole number"),
    (("--shuffle-buffer", "0"), "positive whole number"),
    (("--pipelines", "naive,optimized"), "invalid choice: 'naive,optimized'"),
])
def test_lab04_refuses_bad_flags_before_any_work(tmp_path, flags, message):
    result = _run("--data", "standin", *flags, "--out", str(tmp_path / "out"), timeout=60)
    assert result.returncode == 2
    assert flags[0] in result.stderr and message in result.stderr
    assert not (tmp_path / "out" / "metrics.json").exists()


@pytest.mark.slow
def test_lab04_counts_the_rows_of_the_files_and_runs_only_the_pipelines_asked_for(tmp_path):
    data = _write_batches(tmp_path / "cifar-10-batches-py")
    (data / "train" / "not_a_class").mkdir(parents=True)  # the practical demo must not label it class 0
    out = tmp_path / "out"
    result = _run("--data-dir", str(data), "--pipelines", "optimized", "list_files", "--epochs", "1",
                  "--practical-batches", "1", "--out", str(out))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"]["is_standin"] is False
    assert metrics["data"]["train_rows"] == 5 * ROWS_PER_FILE and metrics["data"]["test_rows"] == ROWS_PER_FILE
    assert metrics["runs"]["optimized"]["timeline"]["stages"]["Train"]["count"] == 5 * ROWS_PER_FILE // 64
    assert "unknown: ['not_a_class']" in result.stdout and "writing a folder of PNGs instead" in result.stdout
    # Pipelines left out of --pipelines are recorded as skipped, and their outputs are not written.
    assert metrics["parts"] == {"naive": "skipped", "optimized": "complete", "in_memory": "skipped",
                                "list_files": "complete", "image_dataset_from_directory": "skipped"}
    assert set(metrics["practical_images_per_second"]) == {"list_files"}
    assert not (out / "timeline_naive.png").exists() and not (out / "practical_batch.png").exists()
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.startswith("lab04 | optimized_s=") and "stand-in" not in summary
