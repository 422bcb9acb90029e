"""lab02_cifar_baselines.py on the offline CIFAR-10 stand-in: outputs, Ctrl-C, kill -9 and resume.

One uninterrupted run serves the output assertions and is the reference for the
interrupted one: Ctrl-C during the lab's SVC (the slow classifier), a re-run killed
(SIGKILL) in the same place, then a re-run that must finish with the same files.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from fakes import REPO_ROOT

SCRIPT = "lab02_cifar_baselines.py"
# Enough images that the lab's SVC takes a second or more, so an interrupt lands inside it.
TINY = ("--data", "standin", "--limit", "4000", "--svm", "both")
PNGS = ("grayscale.png", "hog_cells.png", "confusion_knn.png", "confusion_linear_svm.png", "confusion_lab_svc.png")
TENSORFLOW_NOISE = re.compile(r"^(WARNING: All log messages before absl|[IWEF]\d{4} )")


def run_script(*arguments, out, env=None):
    return subprocess.run([sys.executable, SCRIPT, *arguments, "--out", str(out)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=env)


def _start(log, *arguments, env):
    handle = open(log, "w")  # closed by the caller, through process.log
    process = subprocess.Popen([sys.executable, SCRIPT, *arguments], cwd=REPO_ROOT, env=env, stdout=handle,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    process.log = handle
    return process


def _stop_when_svc_starts(out, log, signal_number, env):
    """Start a run, send ``signal_number`` to its group while the lab's SVC trains (after the linear SVM)."""
    process = _start(log, *TINY, "--out", str(out), env=env)
    deadline = time.monotonic() + 180
    while not _this_run_reached_the_svc(out, process.pid):
        assert process.poll() is None, f"the run ended (status {process.returncode}) before the lab's SVC"
        assert time.monotonic() < deadline, "timed out waiting for the lab's SVC"
        time.sleep(0.02)
    os.killpg(process.pid, signal_number)
    status = process.wait(timeout=60)
    process.log.close()
    return status, Path(log).read_text()


def _this_run_reached_the_svc(out, pid):
    """True once run ``pid`` is in the lab's SVC (its part began; on a busy machine the signal must
    not land between the linear SVM's end and the SVC's start)."""
    try:
        state = json.loads((out / "run.json").read_text())
    except (OSError, ValueError):
        return False
    parts = state.get("parts", {})
    return state.get("pid") == pid and state.get("running") == "lab_svc" \
        and parts.get("lab_svc", {}).get("status") != "complete"


def _files(out):
    return {str(path.relative_to(out)) for path in out.rglob("*") if path.is_file()}


@pytest.fixture(scope="module")
def keras_home(tmp_path_factory):
    return {**os.environ, "KERAS_HOME": str(tmp_path_factory.mktemp("keras_home"))}


@pytest.fixture(scope="module")
def complete(tmp_path_factory, keras_home):
    out = tmp_path_factory.mktemp("complete")
    result = run_script(*TINY, out=out, env=keras_home)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out, result


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory, keras_home):
    out = tmp_path_factory.mktemp("interrupted")
    status, output = _stop_when_svc_starts(out, out.parent / "interrupted.log", signal.SIGINT, keras_home)
    return out, status, output


@pytest.mark.slow
def test_runs_on_the_standin_and_writes_every_output(complete):
    out, result = complete
    for name in PNGS:
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.width > 200 and image.height > 200, name
    assert not [name for name in _files(out) if "partial" in name]

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "complete" and metrics["resumed_parts"] == []
    assert metrics["parts"] == {"knn": "complete", "linear_svm": "complete", "lab_svc": "complete"}
    assert metrics["data"]["is_standin"] is True
    assert metrics["data"]["train_images"] == 4000
    test_images = metrics["data"]["test_images"]
    assert metrics["hog"]["feature_length"] == 288
    assert metrics["hog"]["images"] == 4000 + test_images
    assert set(metrics["classifiers"]) == {"knn", "linear_svm", "lab_svc"}
    for classifier in metrics["classifiers"].values():
        assert classifier["misclassified"] == round((1 - classifier["accuracy"]) * test_images)
        assert classifier["seconds"] >= classifier["fit_seconds"] >= 0
    # The stand-in's shapes are easy to tell apart from their edges: well above chance (0.1) for all three.
    assert all(classifier["accuracy"] > 0.2 for classifier in metrics["classifiers"].values())
    assert "command" in metrics["run"]

    summary = result.stdout.strip().splitlines()[-1]
    assert summary.startswith("lab02 (stand-in data) | hog_s=") and "knn_accuracy=" in summary
    assert "Misclassified samples:" in result.stdout
    assert "HOG train: 4,000 images in" in result.stdout  # one progress line in a log, not a bar


@pytest.mark.slow
def test_ctrl_c_is_one_line_exit_130_and_keeps_the_finished_classifiers(interrupted):
    out, status, output = interrupted
    assert status == 130, output[-3000:]
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if "interrupted" in line and not TENSORFLOW_NOISE.match(line)]
    assert len(lines) == 1 and "interrupted by Ctrl-C during lab_svc" in lines[0]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "interrupted" and metrics["finished_parts"] == ["knn", "linear_svm"]


@pytest.mark.slow
def test_killed_then_rerun_trains_only_what_was_left_and_ends_like_an_uninterrupted_run(
        interrupted, complete, keras_home):
    out = interrupted[0]
    status, output = _stop_when_svc_starts(out, out.parent / "killed.log", signal.SIGKILL, keras_home)
    assert status == -signal.SIGKILL and "resuming the interrupted run" in output and "finished: knn" in output
    knn_figure = (out / "confusion_knn.png").stat().st_mtime_ns

    result = run_script(*TINY, out=out, env=keras_home)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "stopped without finishing (killed?); resuming: finished: knn, linear_svm" in result.stdout
    assert "knn: finished earlier" in result.stdout and "linear_svm: finished earlier" in result.stdout
    assert (out / "confusion_knn.png").stat().st_mtime_ns == knn_figure  # kept, not redrawn
    assert _files(out) == _files(complete[0])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "complete" and metrics["resumed_parts"] == ["knn", "linear_svm"]
    reference = json.loads((complete[0] / "metrics.json").read_text())["classifiers"]
    assert {slug: result["accuracy"] for slug, result in metrics["classifiers"].items()} == {
        slug: result["accuracy"] for slug, result in reference.items()}  # seeded: the same results


@pytest.mark.slow
def test_help_answers_without_importing_the_libraries():
    probe = (f"import runpy, sys; sys.argv = [{SCRIPT!r}, '--help']\n"
             f"try:\n    runpy.run_path({SCRIPT!r}, run_name='__main__')\n"
             "except SystemExit:\n    pass\n"
             "print(sorted(name for name in ('tensorflow', 'sklearn', 'matplotlib.pyplot') if name in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--svm {fast,lab,both}" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.slow
def test_too_small_a_training_set_is_a_clear_error(tmp_path):
    result = run_script("--data", "standin", "--limit", "8", out=tmp_path)
    assert result.returncode == 2
    assert "The smallest accepted is --limit 48" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "metrics.json").exists()  # refused before the run started: nothing written
