"""lab01_mnist.py end to end, as a student runs it, on tiny settings.

One uninterrupted stand-in run (module fixture) serves most assertions; the
Ctrl-C and kill -9 tests interrupt runs of their own and compare with it.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from fakes import REPO_ROOT, write_idx_folder

QUICK = ["--data", "standin", "--epochs", "2", "--limit", "600"]
OUTPUTS = {"sample_digits.png", "predictions.png", "training_curves.png", "metrics.json", "run.json",
           "epochs_softmax.csv", "epochs_cnn.csv"}
EPOCH_LINE = re.compile(r"^\d+/\d+ - .*accuracy")  # Keras verbose=2: one line per epoch


def run_script(*arguments, timeout=300):
    return subprocess.run(
        [sys.executable, "lab01_mnist.py", *arguments], cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=timeout,
    )


def start(*arguments):
    """The script in a session of its own (so a signal can go to its process group), unbuffered."""
    return subprocess.Popen(
        [sys.executable, "lab01_mnist.py", *arguments], cwd=REPO_ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as in a terminal, also under nohup
    )


def read_until(process, count, pattern=EPOCH_LINE, deadline=240):
    """Read stdout until ``count`` lines matched ``pattern``; return the lines read."""
    lines, matched, started = [], 0, time.monotonic()
    while matched < count:
        line = process.stdout.readline()
        assert line, f"the script ended early: {''.join(lines)[-2000:]} {process.stderr.read()[-2000:]}"
        assert time.monotonic() - started < deadline
        lines.append(line)
        matched += bool(pattern.match(line))
    return lines


def read(path):
    return json.loads(path.read_text())


def files(folder):
    return {path.name for path in folder.iterdir() if path.name != ".resume"}  # .resume: the fits' backups


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    out = tmp_path_factory.mktemp("lab01")
    result = run_script(*QUICK, "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


@pytest.mark.slow
def test_standin_run_writes_its_outputs_and_marks_the_standin(standin):
    out, result = standin
    assert files(out) == OUTPUTS and not list(out.glob("**/.*.partial"))
    for name in OUTPUTS - {"metrics.json", "run.json", "epochs_softmax.csv", "epochs_cnn.csv"}:
        assert (out / name).stat().st_size > 1000, name
    metrics = read(out / "metrics.json")
    assert metrics["status"] == "complete" and metrics["sessions"] == 1
    assert metrics["data"]["is_standin"] is True and metrics["data"]["train_images"] == 600
    assert metrics["softmax_regression"]["parameters"] == 7850 and metrics["cnn"]["parameters"] == 93322
    for model in ("softmax_regression", "cnn"):
        history = metrics[model]["history"]
        assert len(history["val_accuracy"]) == len(history["train_seconds"]) == 2
        # The real digits of the stand-in: well above chance (0.1) even in 2 epochs on 600 images.
        assert metrics[model]["test_accuracy"] > 0.5
        assert metrics[model]["test_accuracy"] == pytest.approx(history["val_accuracy"][-1], abs=1e-6)
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.startswith("lab01 (stand-in data) | dataset=mnist | softmax_accuracy=")
    assert "(lab:" not in result.stdout  # the lab's MNIST numbers are no yardstick for the stand-in


@pytest.mark.slow
def test_log_to_a_pipe_has_one_line_per_epoch_and_no_tensorflow_startup_lines(standin):
    _, result = standin
    assert "\r" not in result.stdout and "\x08" not in result.stdout
    assert sum(bool(EPOCH_LINE.match(line)) for line in result.stdout.splitlines()) == 4  # 2 models x 2 epochs
    assert len(result.stdout) < 20_000
    for noise in ("oneDNN", "absl::InitializeLog", "cudart_stub", "cpu_feature_guard"):
        assert noise not in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_ctrl_c_prints_one_line_exits_130_and_marks_the_run_interrupted(tmp_path):
    process = start(*QUICK, "--epochs", "3", "--out", str(tmp_path))
    read_until(process, 1)  # the softmax fit's first epoch
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "Traceback" not in stderr
    message = [line for line in stderr.splitlines() if "interrupted" in line]
    assert len(message) == 1 and "Ctrl-C during softmax" in message[0] and "resume" in message[0]
    assert "softmax 1 of 3 epochs kept" in message[0]  # the epoch whose line was printed is backed up
    metrics = read(tmp_path / "metrics.json")
    assert metrics["status"] == "interrupted" and metrics["running_part"] == "softmax"


@pytest.mark.slow
def test_kill_9_during_epoch_2_then_the_same_command_resumes(tmp_path, standin):
    arguments = [*QUICK, "--out", str(tmp_path)]
    process = start(*arguments)
    read_until(process, 3)  # softmax's two epochs and the CNN's first, whose backup is written before its line
    process.send_signal(signal.SIGKILL)  # now in the CNN's epoch 2
    process.communicate(timeout=60)
    assert read(tmp_path / "metrics.json")["status"] == "running"  # killed: nothing could mark it

    result = run_script(*arguments)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "stopped without finishing (killed?); resuming: softmax 2 of 2 epochs kept; cnn 1 of 2 epochs kept" \
        in result.stdout
    assert "softmax: all 2 epochs were trained before" in result.stdout
    assert "cnn: 1 of 2 epochs kept; going on from epoch 2" in result.stdout
    assert sum(bool(EPOCH_LINE.match(line)) for line in result.stdout.splitlines()) == 1  # only the CNN's epoch 2
    metrics = read(tmp_path / "metrics.json")
    assert metrics["status"] == "complete" and metrics["sessions"] == 2
    assert len(metrics["cnn"]["history"]["loss"]) == 2 and len(metrics["softmax_regression"]["history"]["loss"]) == 2
    assert files(tmp_path) == files(standin[0])


@pytest.mark.slow
def test_the_same_command_replays_a_finished_run_without_training(tmp_path, standin):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(standin[0], out)
    result = run_script(*QUICK, "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "holds a complete run with these settings" in result.stdout and "replaying it" in result.stdout
    assert not any(EPOCH_LINE.match(line) for line in result.stdout.splitlines())  # no epoch trained again
    before, after = read(standin[0] / "metrics.json"), read(out / "metrics.json")
    for model in ("softmax_regression", "cnn"):
        assert after[model]["test_accuracy"] == pytest.approx(before[model]["test_accuracy"], abs=1e-6)
        assert after[model]["history"] == before[model]["history"]
    assert after["sessions"] == 2


@pytest.mark.slow
def test_lab01_reads_idx_files_from_data_dir_and_compares_with_the_lab(tmp_path):
    rng = np.random.default_rng(0)
    arrays = (rng.integers(0, 256, (60, 28, 28)), np.arange(60) % 10,
              rng.integers(0, 256, (20, 28, 28)), np.arange(20) % 10)
    write_idx_folder(tmp_path / "data", arrays)
    result = run_script("--data", "real", "--data-dir", str(tmp_path / "data"), "--epochs", "1",
                        "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = read(tmp_path / "out" / "metrics.json")
    assert metrics["data"]["is_standin"] is False and metrics["data"]["test_images"] == 20
    assert "IDX files" in metrics["data"]["source"]
    assert "(lab: 0.9244)" in result.stdout and "(lab: 0.9912)" in result.stdout
    assert "stand-in" not in result.stdout.strip().splitlines()[-1]


def test_lab01_real_data_offline_fails_fast_with_instructions(tmp_path):
    started = time.perf_counter()
    result = run_script("--data", "real", "--out", str(tmp_path), timeout=120)
    assert result.returncode == 2
    assert "mnist is not available" in result.stderr and "--data-dir" in result.stderr
    assert "Traceback" not in result.stderr
    assert time.perf_counter() - started < 60


def test_bad_dropout_is_a_usage_error(tmp_path):
    result = run_script("--dropout", "1.5", "--out", str(tmp_path), timeout=60)
    assert result.returncode == 2 and "--dropout" in result.stderr and "rate from 0" in result.stderr


def test_help_lists_the_shared_flags_in_under_a_second_without_tensorflow():
    seconds = []
    for _ in range(3):
        started = time.perf_counter()
        result = run_script("--help", timeout=60)
        seconds.append(time.perf_counter() - started)
        assert result.returncode == 0
    for flag in ("--epochs", "--batch-size", "--data", "--data-dir", "--limit", "--out", "--seed", "--dataset",
                 "--fresh"):
        assert flag in result.stdout
    assert "machine" not in result.stdout  # the header speaks to the student
    assert min(seconds) < 1.0, seconds
    code = ("import runpy, sys\nsys.argv = ['lab01_mnist.py', '--help']\ntry:\n"
            "    runpy.run_path('lab01_mnist.py', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print('tensorflow' in sys.modules, 'keras' in sys.modules, file=sys.stderr)\n")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert loaded.stderr.strip().splitlines()[-1] == "False False"
