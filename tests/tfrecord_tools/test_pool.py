"""The worker pool: a dead worker is an error, not a hang; scripts without a main guard use one process."""

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap

import pytest

import tfrecord_tools
from tfrecord_tools import _pool

from fakes import REPO_ROOT, make_class_folder


def test_a_dead_worker_is_an_error_not_a_hang():
    with _pool.start_pool(2) as pool:
        assert list(pool.map(abs, [-1, -2, -3], doing="testing")) == [1, 2, 3]
        # Both workers were started by the three tasks above, so the one that dies was seen alive:
        # its exit code is known and named.
        with pytest.raises(tfrecord_tools.WorkerDiedError,
                           match=r"a worker process died \(exit code 3\) while testing; run the same command again"):
            list(pool.map(os._exit, [3], doing="testing"))


def test_a_dead_workers_exit_code_is_asked_for_again_while_another_thread_collects_it(monkeypatch):
    """The executor's thread reaps the same children: one look may see None before the code is stored."""

    class Clock:  # time passes only when the code under test sleeps
        now = 0.0

        def monotonic(self):
            return self.now

        def sleep(self, seconds):
            self.now += seconds

    class ReapedElsewhere:
        def __init__(self, code, unknown_looks):
            self.code, self.unknown_looks = code, unknown_looks

        def join(self, timeout=None):
            pass

        @property
        def exitcode(self):
            self.unknown_looks -= 1
            return None if self.unknown_looks >= 0 else self.code

    clock = Clock()
    monkeypatch.setattr(_pool, "time", clock)
    processes = [ReapedElsewhere(-signal.SIGKILL, unknown_looks=3), ReapedElsewhere(-signal.SIGTERM, 0)]
    assert _pool._exit_codes(processes, seconds=5) == [-signal.SIGKILL, -signal.SIGTERM]
    assert clock.now < 0.2  # asked again at once, not after the deadline
    clock.now = 0.0
    still_running = ReapedElsewhere(0, unknown_looks=10**9)
    assert _pool._exit_codes([still_running], seconds=0.2) == [None]
    assert clock.now == pytest.approx(0.2, abs=0.021)  # gave up at its deadline


def square(value):
    return value * value


def test_pool_starts_no_more_processes_than_tasks():
    with _pool.WorkerPool(8) as pool:
        assert list(pool.map(square, [2, 3], doing="testing")) == [4, 9]
        assert len(multiprocessing.active_children()) <= 2


def test_unguarded_call_sites_are_recognised(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(
        "import sys, warnings\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from tfrecord_tools import _pool\n"
        "warnings.simplefilter('ignore')\n"
        "print('top', _pool.usable_workers(4))\n"
        "def run():\n"
        "    return _pool.usable_workers(4)\n"
        "print('function at top level', run())\n"
        "if __name__ == '__main__':\n"
        "    print('guarded', run())\n"
    )
    result = subprocess.run([sys.executable, str(script), str(REPO_ROOT)], capture_output=True, text=True,
                            timeout=60)
    assert result.stdout.splitlines() == ["top 1", "function at top level 1", "guarded 4"], result.stderr


def test_script_with_a_main_guard_uses_its_workers(tmp_path):
    make_class_folder(tmp_path / "src", per_class=100, size=(8, 8))
    script = tmp_path / "guarded.py"
    script.write_text(textwrap.dedent(f"""
        import multiprocessing, warnings
        import tfrecord_tools
        print("script body ran")

        def main():
            warnings.simplefilter("error")  # the fallback warning would fail the run
            summary = tfrecord_tools.write_dataset({str(tmp_path / 'src')!r}, {str(tmp_path / 'out')!r}, workers=2)
            print(tfrecord_tools.format_summary(summary))

        if __name__ == "__main__":
            main()
    """))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert result.returncode == 0, result.stderr[-2000:]
    # Each spawned worker imports the script as __mp_main__ (its guarded part does not run).
    assert result.stdout.count("script body ran") >= 2 and "300 images in" in result.stdout


@pytest.mark.slow
def test_worker_pool_from_a_script_without_main_guard_after_tensorflow(tmp_path):
    """Lab scripts are top-level code: spawned workers would run them again, so one process is used, with a warning."""
    make_class_folder(tmp_path / "src", per_class=100, size=(8, 8))  # > 1 chunk, so the pool would be used
    script = tmp_path / "lab_like.py"
    script.write_text(textwrap.dedent(f"""
        import tensorflow as tf
        import tfrecord_tools
        tf.constant(1.0) + 1.0  # TensorFlow's thread pools are running now
        print("script body ran")
        summary = tfrecord_tools.write_dataset({str(tmp_path / 'src')!r}, {str(tmp_path / 'out')!r}, workers=2)
        print(tfrecord_tools.format_summary(summary))
        print(tfrecord_tools.verify({str(tmp_path / 'out')!r}, workers=2).format())
    """))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("script body ran") == 1
    assert "300 images in" in result.stdout and "OK: 300 records" in result.stdout
    assert "1 process is used" in result.stderr and "python -m tfrecord_tools write" in result.stderr

