"""lab03_cifar_cnn.py end to end on the offline stand-in, as a user runs it.

One uninterrupted run serves every check of the outputs; one interrupted sequence
(Ctrl-C during part one, re-run, kill -9 during part two, re-run) serves the resume
checks and is compared with it.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from fakes import REPO_ROOT, unboxed

FLAGS = ["--data", "standin", "--limit", "512", "--epochs", "2", "--no-mixed-precision"]
OUTPUT_FILES = [
    "augmented_images.png", "training_curves.png", "confusion_matrix_arrays.png",
    "confusion_matrix_pipeline.png", "predictions.png", "cifar_cnn.keras", "cifar_cnn_pipeline.keras",
    "epochs_arrays.csv", "epochs_pipeline.csv", "metrics.json", "run.json",
]


def run_lab(out, *flags, timeout=240):
    command = [sys.executable, "lab03_cifar_cnn.py", "--out", str(out), *flags]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)


def start_lab(out, log):
    return subprocess.Popen([sys.executable, "lab03_cifar_cnn.py", *FLAGS, "--out", str(out)], cwd=REPO_ROOT,
                            stdout=log.open("w"), stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"},  # the log shows each line at once
                            # A shell without job control starts background jobs with Ctrl-C ignored,
                            # and children inherit that: give the script a terminal's default.
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for(log, text, process, timeout=120):
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert process.poll() is None, f"ended before {text!r}: " + log.read_text()[-2000:]
        assert time.monotonic() < deadline, f"no {text!r} in time"
        time.sleep(0.1)


def check_outputs(out, result):
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    listed = sorted(entry.name for entry in out.iterdir() if entry.name != ".resume")  # .resume: the backups
    assert listed == sorted(OUTPUT_FILES) and not list(out.rglob(".*.partial"))  # no temporary files left
    for name in OUTPUT_FILES:
        assert (out / name).stat().st_size > 200, name
        if name.endswith(".png"):
            assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "complete"
    summary_lines = [line for line in result.stdout.splitlines() if line.startswith("lab03")]
    assert summary_lines and summary_lines[-1].startswith("lab03 (stand-in data) | arrays_accuracy=")
    assert "pipeline_images_per_s=" in summary_lines[-1]
    return metrics


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("lab03_run")
    result = run_lab(out, *FLAGS)
    return out, result, check_outputs(out, result)


@pytest.mark.slow
def test_runs_on_the_standin_and_writes_every_output(uninterrupted):
    _, result, metrics = uninterrupted
    assert metrics["data"]["is_standin"] is True and metrics["data"]["train_images"] == 512
    assert metrics["pipeline_data"]["train_images"] == 512
    assert metrics["arrays_model"]["parameters"] == 1_756_938
    assert metrics["pipeline_model"]["parameters"] == 1_068_810
    assert metrics["settings"]["dtype_policy"] == "float32" and metrics["settings"]["pipeline_steps_per_epoch"] == 8
    for model in ("arrays_model", "pipeline_model"):
        history = metrics[model]["history"]
        assert metrics[model]["test_accuracy"] == history["val_accuracy"][-1]
        assert len(history["val_accuracy"]) == len(metrics[model]["train_seconds_per_epoch"]) == 2
        assert metrics[model]["images_per_second"] > 0
    assert "tensorflow" in metrics["run"]
    assert "OFFLINE STAND-IN" in result.stdout and "data_batch_1: rows" in unboxed(result.stdout)
    assert "(lab: 0.70" not in result.stdout  # the lab's numbers are no yardstick for the stand-in
    assert "Traceback" not in result.stderr and "UserWarning" not in result.stderr


@pytest.mark.slow
def test_both_models_test_with_the_batch_norm_statistics_of_their_trained_weights(uninterrupted):
    """Recomputed before each evaluation: a short run does not test with moving averages that lag behind."""
    import keras
    import numpy as np

    from common import augment, datasets, training

    out, _, _ = uninterrupted
    data = datasets.load_cifar10("standin", limit=512, seed=0)
    for model_file, images in (("cifar_cnn.keras", data.x_train.astype("float32") / 255.0),
                               ("cifar_cnn_pipeline.keras", augment.test_map(data.x_train).numpy())):
        model = keras.models.load_model(out / model_file)
        norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
        saved = [(norm.moving_mean.numpy(), norm.moving_variance.numpy()) for norm in norms]
        assert training.recompute_batch_norm_statistics(model, images) == 2
        for norm, (mean, variance) in zip(norms, saved, strict=True):
            np.testing.assert_allclose(mean, norm.moving_mean.numpy(), rtol=1e-3, atol=1e-3, err_msg=model_file)
            np.testing.assert_allclose(variance, norm.moving_variance.numpy(), rtol=1e-3, err_msg=model_file)


@pytest.fixture(scope="module")
def interrupted_twice(tmp_path_factory):
    """Ctrl-C in part one, re-run and kill -9 in part two's second epoch, re-run to the end."""
    out = tmp_path_factory.mktemp("lab03_interrupted")
    log = out.parent / "lab03_interrupted.log"
    process = start_lab(out, log)
    try:
        wait_for(log, "Epoch 1/2", process)  # Keras prints it as epoch 1 starts
        os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends
        _, ctrl_c_stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    after_ctrl_c = {"code": process.returncode, "stderr": ctrl_c_stderr,
                    "metrics": json.loads((out / "metrics.json").read_text())}

    log = out.parent / "lab03_resumed.log"
    process = start_lab(out, log)
    try:
        wait_for(log, "Part two", process)
        deadline = time.monotonic() + 120
        while log.read_text().split("Part two")[-1].count("Epoch 2/2") < 1:  # part two's second epoch began
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.05)
        text = log.read_text()
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    after_kill = json.loads((out / "metrics.json").read_text())
    final = run_lab(out, *FLAGS)
    return {"out": out, "ctrl_c": after_ctrl_c, "killed": after_kill, "resumed_log": text, "final": final,
            "metrics": check_outputs(out, final)}


@pytest.mark.slow
def test_ctrl_c_prints_one_line_exits_130_and_marks_the_run(interrupted_twice):
    ctrl_c = interrupted_twice["ctrl_c"]
    assert ctrl_c["code"] == 130
    assert "Traceback" not in ctrl_c["stderr"]
    lines = [line for line in ctrl_c["stderr"].splitlines() if "interrupted" in line]
    assert len(lines) == 1 and "during arrays" in lines[0] and "run the same command again" in lines[0]
    assert "arrays 0 of 2 epochs kept" in lines[0]
    assert ctrl_c["metrics"]["status"] == "interrupted" and ctrl_c["metrics"]["running_part"] == "arrays"


@pytest.mark.slow
def test_kill_9_then_the_same_command_resumes_and_matches_an_uninterrupted_run(interrupted_twice, uninterrupted):
    killed = interrupted_twice["killed"]
    assert killed["status"] == "running" and killed["running_part"] == "pipeline"  # kill -9: nothing could mark it
    assert killed["fits"] == {"arrays": "2 of 2 epochs kept", "pipeline": "1 of 2 epochs kept"}
    final = interrupted_twice["final"].stdout
    assert "stopped without finishing (killed?); resuming: arrays 2 of 2 epochs kept; pipeline 1 of 2" in final
    assert "arrays: all 2 epochs were trained before" in final
    assert "pipeline: 1 of 2 epochs kept; going on from epoch 2" in final
    assert final.count("Epoch 2/2") == 1 and "Epoch 1/2" not in final  # only part two's second epoch
    metrics = interrupted_twice["metrics"]
    assert metrics["sessions"] == 3
    for model in ("arrays_model", "pipeline_model"):
        assert len(metrics[model]["history"]["loss"]) == 2
        assert len(metrics[model]["train_seconds_per_epoch"]) == 2
    uninterrupted_out = uninterrupted[0]
    assert sorted(path.name for path in interrupted_twice["out"].iterdir()) == \
        sorted(path.name for path in uninterrupted_out.iterdir())
    assert sorted(json.loads((interrupted_twice["out"] / "run.json").read_text())["files"]) == \
        sorted(json.loads((uninterrupted_out / "run.json").read_text())["files"])


@pytest.mark.slow
def test_a_limit_below_one_batch_is_a_clear_error(tmp_path):
    started = time.perf_counter()
    result = run_lab(tmp_path / "out", "--data", "standin", "--limit", "20", timeout=120)
    assert result.returncode == 2
    assert "--limit 20" in result.stderr and "smallest accepted is --limit 64" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()  # refused before the run started: nothing written
    assert time.perf_counter() - started < 5  # before TensorFlow loads and before any data is read


def test_help_and_bad_flags_answer_before_tensorflow_starts(tmp_path):
    started = time.perf_counter()
    result = run_lab(tmp_path, "--help", timeout=60)
    assert result.returncode == 0 and "--mixed-precision" in result.stdout and time.perf_counter() - started < 5
    assert "--strategy" not in result.stdout  # distribution has a script of its own
    assert "tensorflow" not in result.stderr.lower()
    result = run_lab(tmp_path, "--pipeline-batch-size", "0", timeout=60)
    assert result.returncode == 2 and "--pipeline-batch-size: expected a positive whole number, got 0" in result.stderr
    result = run_lab(tmp_path, "--augmentation", "everything", timeout=60)
    assert result.returncode == 2 and "invalid choice" in result.stderr
