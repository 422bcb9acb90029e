"""common.interrupts: Ctrl-C and SIGTERM end a run in one line, marked interrupted; long C calls stay interruptible."""

import json
import os
import signal
import time
from pathlib import Path

import pytest

from common.interrupts import interruptible

from fakes import start_run_script


def read(path):
    return json.loads(Path(path).read_text())


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_prints_one_line_marks_the_run_and_exits(tmp_path, signum, status):
    process = start_run_script(tmp_path, "long", """
        run.complete("first", {"x": 1})
        run.finished("second")
        print("ready", flush=True)
        time.sleep(60)
    """)
    assert process.stdout.readline().strip() == "ready"
    os.kill(process.pid, signum)
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == status
    assert "Traceback" not in stderr
    assert "interrupted" in stderr and "during second" in stderr and "finished: first" in stderr
    metrics = read(tmp_path / "out" / "metrics.json")
    assert metrics["status"] == "interrupted" and metrics["finished_parts"] == ["first"]


def test_ctrl_c_after_finish_says_the_outputs_are_complete(tmp_path):
    process = start_run_script(tmp_path, "done", """
        run.finish({}, {})
        time.sleep(60)  # stands for TensorFlow's teardown
    """, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
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
    started = time.monotonic()
    process = start_run_script(tmp_path, "swallowed", """
        import os, signal
        run.write_text("started.txt", "a first output")
        class Finalised:
            def __del__(self):
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(100_000):
                    pass
        Finalised()
        print("still running", flush=True)
        time.sleep(60)
    """)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130 and time.monotonic() - started < 20
    assert "interrupted by Ctrl-C" in stderr
    assert read(tmp_path / "out" / "metrics.json")["status"] == "interrupted"


def test_interruptible_returns_and_raises_like_the_call():
    assert interruptible(sum, [1, 2, 3]) == 6
    with pytest.raises(ZeroDivisionError):
        interruptible(lambda: 1 / 0)


def test_ctrl_c_stops_a_long_call_at_once(tmp_path):
    process = start_run_script(tmp_path, "long_call", """
        run.write_text("started.txt", "x")
        run.finished("fit")
        print("ready", flush=True)
        interruptible(time.sleep, 60)  # stands for a C loop that holds Ctrl-C back
    """, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert process.stdout.readline().strip() == "ready"
    started = time.monotonic()
    os.kill(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 130 and time.monotonic() - started < 5
    assert "during fit" in stderr
