"""common.run: one run per folder, manifest, status, parts, fits through Keras callbacks, resume, interrupts."""

import argparse
import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from common import run as runs
from common.errors import UserError
from common.run import Run, read_epoch_log

from fakes import REPO_ROOT, start_run_script


def config(out, **settings):
    values = {"epochs": 2, "seed": 0, "fresh": False, **settings}
    return argparse.Namespace(out=out, **values)


def read(path):
    return json.loads(Path(path).read_text())


def test_status_goes_running_then_complete_and_manifest_lists_files(tmp_path):
    run = Run(config(tmp_path), "demo", chief=True)
    run.write_json("table.json", {"a": 1})
    assert read(tmp_path / "metrics.json")["status"] == "running"
    run.write_text("notes.md", "hello")
    run.complete("part one", {"accuracy": 0.5})
    assert read(tmp_path / "metrics.json")["finished_parts"] == ["part one"]
    line = run.finish({"accuracy": 0.5}, {"accuracy": 0.5})
    metrics = read(tmp_path / "metrics.json")
    assert metrics["status"] == "complete" and metrics["parts"] == {"part one": "complete"}
    assert metrics["sessions"] == 1 and metrics["total_seconds"] == metrics["session_seconds"]
    assert set(read(tmp_path / "run.json")["files"]) == {"table.json", "notes.md", "metrics.json"}
    assert line.startswith("demo | accuracy=0.5000 | total_s=") and "sessions" not in line


def test_same_settings_resume_finished_parts_and_total_seconds_cover_every_session(tmp_path, capsys):
    first = Run(config(tmp_path), "demo", chief=True)
    first.complete("naive", {"seconds": 3.0})
    assert first.finished("optimized") is None
    time.sleep(0.3)
    first.stop("interrupted", "Ctrl-C during optimized")
    metrics = read(tmp_path / "metrics.json")
    assert metrics["status"] == "interrupted" and metrics["running_part"] == "optimized"

    second = Run(config(tmp_path), "demo", chief=True)
    assert "resuming the interrupted run" in capsys.readouterr().out
    assert second.finished("naive") == {"seconds": 3.0}
    assert second.finished("optimized") is None
    line = second.finish({}, {})
    metrics = read(tmp_path / "metrics.json")
    assert metrics["resumed_parts"] == ["naive"] and metrics["sessions"] == 2
    assert metrics["total_seconds"] >= 0.3 > metrics["session_seconds"]
    assert "sessions=2" in line


def test_other_settings_or_fresh_start_over_delete_only_old_files_and_say_what_they_discard(tmp_path, capsys):
    first = Run(config(tmp_path), "demo", chief=True)
    first.write_text("old_figure.png", "x")
    first.complete("naive", {"seconds": 3.0})
    (tmp_path / "mine.txt").write_text("a file the user put here")
    first.stop("interrupted", "Ctrl-C")

    second = Run(config(tmp_path, epochs=5), "demo", chief=True)
    assert "--epochs 2 -> 5" in capsys.readouterr().out
    assert second.finished("naive") is None
    assert (tmp_path / "old_figure.png").exists()  # nothing is cleared before this run writes

    second.complete("naive", {"seconds": 1.0})
    assert "discarding the interrupted run" in capsys.readouterr().out
    assert not (tmp_path / "old_figure.png").exists()
    assert (tmp_path / "mine.txt").exists()
    second.stop("interrupted", "Ctrl-C")
    third = Run(config(tmp_path, epochs=5, fresh=True), "demo", chief=True)
    assert third.finished("naive") is None
    third.complete("naive", {"seconds": 2.0})
    said = capsys.readouterr().out
    assert "--fresh: discarding the interrupted run" in said and "finished: naive" in said


def test_changed_code_starts_over_and_says_so(tmp_path, capsys):
    Run(config(tmp_path), "demo", chief=True, code="version 1").complete("naive", {"seconds": 3.0})
    again = Run(config(tmp_path), "demo", chief=True, code="version 2")
    assert "the code changed since" in capsys.readouterr().out
    assert again.finished("naive") is None


def test_code_digest_is_the_sha256_of_the_script_that_runs(tmp_path):
    script = tmp_path / "lesson.py"
    script.write_text(f"import sys; sys.path.insert(0, {str(REPO_ROOT)!r})\n"
                      "from common.run import code_digest; print(code_digest())\n")
    printed = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True).stdout
    import hashlib
    assert printed.strip() == hashlib.sha256(script.read_bytes()).hexdigest()


def test_a_file_half_written_by_a_killed_run_is_removed(tmp_path):
    (tmp_path / ".figure.png.x1y2.partial").write_bytes(b"")  # what atomic_path leaves after kill -9
    Run(config(tmp_path), "demo", chief=True)
    assert not list(tmp_path.glob(".*.partial"))


def test_a_complete_run_is_replayed_and_fresh_runs_it_again(tmp_path, capsys):
    first = Run(config(tmp_path), "demo", chief=True)
    first.complete("naive", {"seconds": 3.0})
    first.finish({}, {})
    again = Run(config(tmp_path), "demo", chief=True)
    assert "replaying it" in capsys.readouterr().out
    assert again.finished("naive") == {"seconds": 3.0}
    again.finish({}, {})
    fresh = Run(config(tmp_path, fresh=True), "demo", chief=True)
    assert fresh.finished("naive") is None


def test_skip_is_recorded(tmp_path, capsys):
    run = Run(config(tmp_path), "demo", chief=True)
    run.skip("augmentation", "TODO 2 is not written yet")
    assert "augmentation: skipped (TODO 2 is not written yet)" in capsys.readouterr().out
    run.finish({}, {})
    assert read(tmp_path / "metrics.json")["parts"] == {"augmentation": "skipped"}
    assert run.skipped == {"augmentation": "TODO 2 is not written yet"}


def test_non_chief_writes_nothing_into_out(tmp_path):
    out = tmp_path / "out"
    run = Run(config(out), "demo", chief=False)
    run.write_text("figure.png", "x")
    run.finish({}, {})
    assert not out.exists() or not any(out.iterdir())
    assert not run.out.exists()


@pytest.mark.parametrize(("tf_config", "chief"), [
    (None, True), ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}, True),
    ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}, False),
    ({"cluster": {"chief": ["c:1"], "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}, False),
    ({"cluster": {"chief": ["c:1"], "worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}, True),
])
def test_the_chief_is_read_from_tf_config(monkeypatch, tf_config, chief):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    assert runs.tf_config_is_chief() is chief


def test_a_bad_tf_config_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(UserError, match="TF_CONFIG is not valid JSON"):
        runs.tf_config_is_chief()


def test_a_run_that_stops_before_writing_leaves_the_older_run_as_it_was(tmp_path):
    first = Run(config(tmp_path), "demo", chief=True)
    first.write_text("figure.png", "real run")
    first.finish({"accuracy": 0.9}, {})
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    second = Run(config(tmp_path, epochs=1), "demo", chief=True)  # e.g. its --data-dir is wrong
    second.stop("failed", "UserError: no photos in --data-dir")
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before


def test_a_run_that_stops_before_writing_leaves_no_folder_it_made(tmp_path):
    out = tmp_path / "new" / "out"
    run = Run(config(out), "demo", chief=True)
    assert out.is_dir()
    run.stop("failed", "UserError: missing data")
    assert not out.exists()


def test_a_complete_run_with_other_settings_is_moved_to_previous_and_the_rotation_is_said(tmp_path, capsys):
    first = Run(config(tmp_path), "demo", chief=True)
    first.write_text("figure.png", "real run")
    first.write_text("sub/table.md", "table")
    first.finish({"accuracy": 0.9}, {})
    second = Run(config(tmp_path, epochs=1), "demo", chief=True)
    second.write_text("figure.png", "quick run")
    said = capsys.readouterr().out
    assert "moved to" in said and "replacing" not in said
    assert (tmp_path / "previous" / "figure.png").read_text() == "real run"
    assert (tmp_path / "previous" / "sub" / "table.md").read_text() == "table"
    assert read(tmp_path / "previous" / "metrics.json")["status"] == "complete"
    assert not (tmp_path / "sub" / "table.md").exists()
    second.finish({}, {})
    assert "previous" not in "".join(read(tmp_path / "run.json")["files"])
    third = Run(config(tmp_path, epochs=3), "demo", chief=True)
    third.write_text("figure.png", "third")
    assert "replacing the run kept there before" in capsys.readouterr().out
    assert (tmp_path / "previous" / "figure.png").read_text() == "quick run"


def test_a_second_run_into_a_busy_folder_is_refused_in_one_line_and_touches_nothing(tmp_path):
    holder = start_run_script(tmp_path, "holder", """
        run.write_text("started.txt", "x")
        print("ready", flush=True)
        time.sleep(60)
    """)
    try:
        assert holder.stdout.readline().strip() == "ready"
        before = {path.name: path.read_bytes() for path in (tmp_path / "out").iterdir()}
        second = start_run_script(tmp_path, "second", "print('not refused')\n")
        stdout, stderr = second.communicate(timeout=30)
        assert second.returncode == 2 and "not refused" not in stdout
        message = [line for line in stderr.splitlines() if line.strip()]
        assert len(message) == 1 and f"another run (pid {holder.pid}, started " in message[0]
        assert "wait for it or choose another --out" in message[0]
        assert {path.name: path.read_bytes() for path in (tmp_path / "out").iterdir()} == before
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_of_a_killed_run_is_taken_over_and_the_resume_says_it_was_killed(tmp_path):
    killed = start_run_script(tmp_path, "killed", """
        run.complete("naive", {"seconds": 1.0})
        run.finished("optimized")
        print("ready", flush=True)
        time.sleep(60)
    """)
    assert killed.stdout.readline().strip() == "ready"
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert read(tmp_path / "out" / "metrics.json")["running_part"] == "optimized"
    again = start_run_script(tmp_path, "killed", "print('went on', flush=True)\n")
    stdout, stderr = again.communicate(timeout=30)
    assert again.returncode == 0, stderr
    assert f"(pid {killed.pid}) stopped without finishing (killed?); resuming: finished: naive" in stdout
    assert "went on" in stdout


def test_the_epoch_log_keeps_the_last_row_of_each_epoch_and_skips_a_torn_row(tmp_path):
    log = tmp_path / "epochs_cnn.csv"
    log.write_text("epoch,accuracy,loss\n0,0.5,1.0\n1,0.6,0.9\n1,0.65,0.8\n2,0.7")  # epoch 1 trained twice, a kill
    assert read_epoch_log(log) == {"accuracy": [0.5, 0.65], "loss": [1.0, 0.8]}
    assert read_epoch_log(tmp_path / "missing.csv") == {}


# ---------------------------------------------------------------------------
# Fits resume through run.callbacks(...): BackupAndRestore, CSVLogger, the epoch timer.

def fit_in_a_child(tmp_path, epochs, stop_after=None):
    """model.fit(..., callbacks=run.callbacks("tiny")) in a fresh process, as a re-run is; returns its stdout."""
    script = tmp_path / "fit.py"
    script.write_text(textwrap.dedent(f"""
        import argparse, json, sys
        sys.path.insert(0, {str(REPO_ROOT)!r})
        import keras, numpy as np
        from common import distribute
        from common.run import Run
        run = Run(argparse.Namespace(out={str(tmp_path / 'out')!r}, fresh=False, epochs={epochs}), "fit",
                  chief=True, code="same")
        keras.utils.set_random_seed(0)
        x = np.random.default_rng(0).random((64, 4), dtype=np.float32)
        y = (x.sum(axis=1) > 2).astype("int32")
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])

        class Stop(keras.callbacks.Callback):  # a kill at the end of an epoch, after its backup
            def on_epoch_end(self, epoch, logs=None):
                if epoch + 1 == {stop_after!r}:
                    import os
                    os._exit(9)

        history = model.fit(x, y, batch_size=16, epochs={epochs}, validation_data=(x, y), verbose=0,
                            callbacks=[*run.callbacks("tiny"), Stop()])
        print(json.dumps({{"trained_now": len(history.epoch), "checksum": distribute.weights_checksum(model),
                          "history": run.history("tiny")}}))
    """))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    return result


@pytest.mark.slow
def test_a_fit_killed_after_epoch_2_of_4_goes_on_with_epoch_3_and_a_finished_fit_trains_nothing(tmp_path):
    killed = fit_in_a_child(tmp_path, epochs=4, stop_after=2)
    assert killed.returncode == 9
    metrics = read(tmp_path / "out" / "metrics.json")
    assert metrics["running_part"] == "tiny" and metrics["fits"] == {"tiny": "2 of 4 epochs kept"}
    resumed = fit_in_a_child(tmp_path, epochs=4)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "tiny 2 of 4 epochs kept" in resumed.stdout and "going on from epoch 3" in resumed.stdout
    first = json.loads(resumed.stdout.splitlines()[-1])
    assert first["trained_now"] == 2
    assert {key: len(values) for key, values in first["history"].items()} == {
        "accuracy": 4, "loss": 4, "val_accuracy": 4, "val_loss": 4, "train_seconds": 4, "validation_seconds": 4}
    rows = (tmp_path / "out" / "epochs_tiny.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["0", "1", "2", "3"]  # each epoch once

    replayed = fit_in_a_child(tmp_path, epochs=4)
    again = json.loads(replayed.stdout.splitlines()[-1])
    assert again["trained_now"] == 0 and again["checksum"] == first["checksum"]  # the trained weights, restored
    assert again["history"] == first["history"]
    assert "all 4 epochs were trained before" in replayed.stdout


def test_folder_locks_are_per_process_so_a_notebook_can_run_all_again(tmp_path):
    first = Run(config(tmp_path), "demo", chief=True)
    first.write_text("a.txt", "x")
    again = Run(config(tmp_path), "demo", chief=True)  # the same kernel, Run All again
    again.write_text("a.txt", "y")
    assert (tmp_path / "a.txt").read_text() == "y"
