"""report.Run: manifest, status in metrics.json, parts, resume, fingerprint, interrupts."""

import argparse
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from common import report

REPO_ROOT = Path(__file__).resolve().parents[1]


def config(out, **settings):
    values = {"epochs": 2, "seed": 0, "fresh": False, **settings}
    return argparse.Namespace(out=out, **values)


def read(path):
    return json.loads(Path(path).read_text())


def test_status_goes_running_then_complete_and_manifest_lists_files(tmp_path):
    run = report.Run(config(tmp_path), "demo", chief=True)
    run.write_json("table.json", {"a": 1})
    assert read(tmp_path / "metrics.json")["status"] == "running"
    run.write_text("notes.md", "hello")
    run.complete("part one", {"accuracy": 0.5})
    assert read(tmp_path / "metrics.json")["finished_parts"] == ["part one"]
    line = run.finish({"accuracy": 0.5}, {"accuracy": 0.5})
    metrics = read(tmp_path / "metrics.json")
    assert metrics["status"] == "complete" and metrics["parts"] == {"part one": "complete"}
    assert set(read(tmp_path / "run.json")["files"]) == {"table.json", "notes.md", "metrics.json"}
    assert line.startswith("demo | accuracy=0.5000 | total_s=")


def test_same_settings_resume_finished_parts(tmp_path, capsys):
    first = report.Run(config(tmp_path), "demo", chief=True)
    first.complete("naive", {"seconds": 3.0})
    assert first.finished("optimized") is None
    first.stop("interrupted", "Ctrl-C during optimized")
    assert read(tmp_path / "metrics.json")["status"] == "interrupted"

    second = report.Run(config(tmp_path), "demo", chief=True)
    assert "resuming" in capsys.readouterr().out
    assert second.finished("naive") == {"seconds": 3.0}
    assert second.finished("optimized") is None
    second.finish({}, {})
    assert read(tmp_path / "metrics.json")["resumed_parts"] == ["naive"]


def test_other_settings_or_fresh_start_over_and_delete_only_old_files(tmp_path, capsys):
    first = report.Run(config(tmp_path), "demo", chief=True)
    first.write_text("old_figure.png", "x")
    first.complete("naive", {"seconds": 3.0})
    (tmp_path / "mine.txt").write_text("a file the user put here")
    first.stop("interrupted", "Ctrl-C")

    second = report.Run(config(tmp_path, epochs=5), "demo", chief=True)
    assert "--epochs 2 -> 5" in capsys.readouterr().out
    assert second.finished("naive") is None
    assert (tmp_path / "old_figure.png").exists()  # nothing is cleared before this run writes

    second.complete("naive", {"seconds": 1.0})
    assert not (tmp_path / "old_figure.png").exists()
    assert (tmp_path / "mine.txt").exists()
    second.stop("interrupted", "Ctrl-C")
    third = report.Run(config(tmp_path, epochs=5, fresh=True), "demo", chief=True)
    assert third.finished("naive") is None


def test_a_file_half_written_by_a_killed_run_is_removed(tmp_path):
    (tmp_path / ".figure.png.x1y2.partial").write_bytes(b"")  # what atomic_path leaves after kill -9
    report.Run(config(tmp_path), "demo", chief=True)
    assert not list(tmp_path.glob(".*.partial"))


def test_complete_run_is_not_resumed(tmp_path):
    first = report.Run(config(tmp_path), "demo", chief=True)
    first.complete("naive", {"seconds": 3.0})
    first.finish({}, {})
    again = report.Run(config(tmp_path), "demo", chief=True)
    assert again.finished("naive") is None


def test_skip_is_recorded(tmp_path, capsys):
    run = report.Run(config(tmp_path), "demo", chief=True)
    run.skip("augmentation", "TODO 2 is not written yet")
    assert "augmentation: skipped (TODO 2 is not written yet)" in capsys.readouterr().out
    run.finish({}, {})
    assert read(tmp_path / "metrics.json")["parts"] == {"augmentation": "skipped"}
    assert run.skipped == {"augmentation": "TODO 2 is not written yet"}


def test_non_chief_writes_nothing_into_out(tmp_path):
    out = tmp_path / "out"
    run = report.Run(config(out), "demo", chief=False)
    run.write_text("figure.png", "x")
    run.finish({}, {})
    assert not out.exists() or not any(out.iterdir())
    assert not run.out.exists()


def test_summary_line_formats_seconds_with_one_decimal():
    assert report.summary_line("x", accuracy=0.91234, total_s=6.4375, images=1234.5) == \
        "x | accuracy=0.9123 | total_s=6.4 | images=1234.5"


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_prints_one_line_marks_the_run_and_exits(tmp_path, signum, status):
    script = tmp_path / "long.py"
    script.write_text(textwrap.dedent(f"""
        import argparse, sys, time
        sys.path.insert(0, {str(REPO_ROOT)!r})
        from common import report
        run = report.Run(argparse.Namespace(out={str(tmp_path / 'out')!r}, fresh=False), "long", chief=True)
        run.complete("first", {{"x": 1}})
        run.finished("second")
        print("ready", flush=True)
        time.sleep(60)
    """))
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    assert process.stdout.readline().strip() == "ready"
    os.kill(process.pid, signum)
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == status
    assert "Traceback" not in stderr
    assert "interrupted" in stderr and "during second" in stderr and "resume" in stderr
    metrics = read(tmp_path / "out" / "metrics.json")
    assert metrics["status"] == "interrupted" and metrics["finished_parts"] == ["first"]


def test_ctrl_c_after_finish_says_the_outputs_are_complete(tmp_path):
    script = tmp_path / "done.py"
    script.write_text(textwrap.dedent(f"""
        import argparse, sys, time
        sys.path.insert(0, {str(REPO_ROOT)!r})
        from common import report
        run = report.Run(argparse.Namespace(out={str(tmp_path / 'out')!r}, fresh=False), "done", chief=True)
        run.finish({{}}, {{}})
        time.sleep(60)  # stands for TensorFlow's teardown
    """))
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert process.stdout.readline().startswith("outputs in")
    assert process.stdout.readline().startswith("done | total_s=")
    os.kill(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 130
    assert "Traceback" not in stderr and "after the run had finished" in stderr and "complete" in stderr
    assert read(tmp_path / "out" / "metrics.json")["status"] == "complete"


def test_ctrl_c_swallowed_by_a_finalizer_still_stops_the_run(tmp_path):
    # Python drops an exception raised in __del__ or a weakref callback; TensorFlow's tracing
    # runs many, so a Ctrl-C can land in one.
    script = tmp_path / "swallowed.py"
    script.write_text(textwrap.dedent(f"""
        import argparse, os, signal, sys, time
        sys.path.insert(0, {str(REPO_ROOT)!r})
        from common import report
        run = report.Run(argparse.Namespace(out={str(tmp_path / 'out')!r}, fresh=False), "swallowed", chief=True)
        run.write_text("started.txt", "a first output")
        class Finalised:
            def __del__(self):
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(100_000):
                    pass
        Finalised()
        print("still running", flush=True)
        time.sleep(60)
    """))
    started = time.monotonic()
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 130 and time.monotonic() - started < 20
    assert "interrupted by Ctrl-C" in result.stderr
    assert read(tmp_path / "out" / "metrics.json")["status"] == "interrupted"


def test_a_run_that_stops_before_writing_leaves_the_older_run_as_it_was(tmp_path):
    first = report.Run(config(tmp_path), "demo", chief=True)
    first.write_text("figure.png", "real run")
    first.finish({"accuracy": 0.9}, {})
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    second = report.Run(config(tmp_path, epochs=1), "demo", chief=True)  # e.g. its --data-dir is wrong
    second.stop("failed", "UserError: no photos in --data-dir")
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before


def test_a_complete_run_with_other_settings_is_moved_to_previous(tmp_path, capsys):
    first = report.Run(config(tmp_path), "demo", chief=True)
    first.write_text("figure.png", "real run")
    first.write_text("sub/table.md", "table")
    first.finish({"accuracy": 0.9}, {})
    second = report.Run(config(tmp_path, epochs=1), "demo", chief=True)
    second.write_text("figure.png", "quick run")
    assert "moved to" in capsys.readouterr().out
    assert (tmp_path / "previous" / "figure.png").read_text() == "real run"
    assert (tmp_path / "previous" / "sub" / "table.md").read_text() == "table"
    assert read(tmp_path / "previous" / "metrics.json")["status"] == "complete"
    assert not (tmp_path / "sub" / "table.md").exists()
    second.finish({}, {})
    assert "previous" not in "".join(read(tmp_path / "run.json")["files"])


def test_interruptible_returns_and_raises_like_the_call():
    assert report.interruptible(sum, [1, 2, 3]) == 6
    with pytest.raises(ZeroDivisionError):
        report.interruptible(lambda: 1 / 0)


def test_ctrl_c_stops_a_long_call_at_once(tmp_path):
    script = tmp_path / "long_call.py"
    script.write_text(textwrap.dedent(f"""
        import argparse, sys, time
        sys.path.insert(0, {str(REPO_ROOT)!r})
        from common import report
        run = report.Run(argparse.Namespace(out={str(tmp_path / 'out')!r}, fresh=False), "long", chief=True)
        run.write_text("started.txt", "x")
        run.finished("fit")
        print("ready", flush=True)
        report.interruptible(time.sleep, 60)  # stands for a C loop that holds Ctrl-C back
    """))
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert process.stdout.readline().strip() == "ready"
    started = time.monotonic()
    os.kill(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 130 and time.monotonic() - started < 5
    assert "during fit" in stderr
