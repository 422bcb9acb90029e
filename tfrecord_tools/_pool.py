"""A process pool that is safe to start after TensorFlow has been imported.

Why spawn: ``fork`` copies a parent that may already run TensorFlow's thread
pools, and a child that inherits a lock held by one of those threads can hang.
Spawned workers start from a fresh interpreter and import only Pillow, hashlib
and google-crc32c (``tfrecord_tools`` imports TensorFlow lazily).

Why hide ``__main__``: a spawned child normally re-imports the parent's main
script to find functions defined there. The course's lab scripts are written as
top-to-bottom module code without an ``if __name__ == "__main__"`` guard, so
re-importing one would run the whole lab again inside every worker. Our worker
functions live in ``tfrecord_tools`` modules, so the children do not need the
main script; we show them a blank ``__main__`` while the pool starts.
"""

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
import types


def default_workers():
    """Number of CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def _blank_main_module():
    real_main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if real_main is not None:
            sys.modules["__main__"] = real_main


def _prepare_worker(initializer, initargs):
    """Runs first in every worker process."""
    # Ctrl-C reaches the whole process group; the parent handles it (and stops the
    # pool), so the workers ignore it instead of each printing a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()

    def exit_when_orphaned():
        # If the parent is killed, stop rather than finish (and, when writing, rename)
        # a shard behind the back of the re-run that will follow.
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=exit_when_orphaned, daemon=True).start()
    if initializer is not None:
        initializer(*initargs)


def start_pool(workers, initializer=None, initargs=()):
    """Start ``workers`` spawned processes; the caller closes the pool.

    Parameters
    ----------
    workers : int
        Number of processes (at least 2; with 1 the callers run in-process).
    initializer, initargs
        As for :class:`multiprocessing.pool.Pool`.
    """
    context = multiprocessing.get_context("spawn")
    with _blank_main_module(), _children_ignore_ctrl_c():
        # Pool starts all its processes in the constructor, so the blank main
        # module is in place exactly while the children read it.
        return context.Pool(workers, initializer=_prepare_worker, initargs=(initializer, initargs))


@contextlib.contextmanager
def _children_ignore_ctrl_c():
    """Ignore SIGINT while the workers start, so they inherit "ignore" through exec.

    ``_prepare_worker`` also ignores it, but only once the child has imported
    enough to run it: a Ctrl-C in the first milliseconds would otherwise print a
    traceback from inside ``multiprocessing.spawn`` in every starting worker.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be changed from the main thread
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
