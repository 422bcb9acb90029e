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

Why ``concurrent.futures``: when a worker of a ``multiprocessing.Pool`` dies
(the out-of-memory killer sends SIGKILL), the pool starts a replacement (which,
spawned outside the blank ``__main__``, would run the lab script) and the task
the dead worker held is lost, so the parent waits forever. A
``ProcessPoolExecutor`` never replaces a worker: it fails every pending task
with ``BrokenProcessPool``, which :class:`WorkerPool` turns into a
:class:`~tfrecord_tools.errors.WorkerDiedError` that says what to do.
"""

import concurrent.futures
import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
import types
from concurrent.futures.process import BrokenProcessPool

from .errors import WorkerDiedError

#: Seconds between checks while waiting for results (progress bars are updated then).
POLL_SECONDS = 0.2


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


class WorkerPool:
    """Spawned worker processes that fail loudly, instead of hanging, when one dies.

    Parameters
    ----------
    workers : int
        Number of processes (at least 2; with 1 the callers run in-process).
    initializer, initargs
        Run in every worker once, as for :class:`multiprocessing.pool.Pool`.

    Every worker is started here, while the children see a blank ``__main__``
    and ignore Ctrl-C; none is ever started later. Use as a context manager, or
    call :meth:`terminate` when done.
    """

    def __init__(self, workers, initializer=None, initargs=()):
        self.workers = workers
        self._executor = concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"), initializer=_prepare_worker,
            initargs=(initializer, initargs),
        )
        with _blank_main_module(), _children_ignore_ctrl_c():
            # The executor would otherwise start workers on demand, one per submit, some
            # of them outside these two contexts. (A private method, in CPython 3.11+.)
            self._executor._launch_processes()
        self._processes = list(self._executor._processes.values())

    def map(self, function, items, *, doing, then=None, ordered=True, on_wait=None):
        """Yield ``function(item)`` for every item, computed in the workers.

        Parameters
        ----------
        function : callable
            A module-level function (it is pickled by name).
        items : iterable
            Arguments, one per call; all are submitted at once.
        doing : str
            What the pool is doing, for the error message: "checking the images under SRC".
        then : str, optional
            What the user should do after a worker died; default: run the same command again.
        ordered : bool
            Yield results in the order of ``items`` (else as they complete).
        on_wait : callable, optional
            Called every :data:`POLL_SECONDS` while waiting, and after each result.

        Raises
        ------
        WorkerDiedError
            A worker process ended abruptly; the other workers are stopped.
        Exception
            Whatever ``function`` raised in a worker.
        """
        try:
            futures = [self._executor.submit(function, item) for item in items]
            pending = set(futures)
            if ordered:
                for future in futures:
                    while True:
                        try:
                            result = future.result(timeout=POLL_SECONDS)
                            break
                        except concurrent.futures.TimeoutError:
                            if on_wait is not None:
                                on_wait()
                    yield result
                    if on_wait is not None:
                        on_wait()
                return
            while pending:
                done, pending = concurrent.futures.wait(
                    pending, timeout=POLL_SECONDS, return_when=concurrent.futures.FIRST_COMPLETED
                )
                for future in done:
                    yield future.result()
                if on_wait is not None:
                    on_wait()
        except BrokenProcessPool:
            raise WorkerDiedError(self._death_message(doing, then)) from None

    def _death_message(self, doing, then):
        deadline = time.monotonic() + 2.0
        for process in self._processes:  # the executor is stopping the others: wait a moment for exit codes
            process.join(timeout=max(0.0, deadline - time.monotonic()))
        codes = [process.exitcode for process in self._processes]
        # The executor stops the other workers with SIGTERM: the first other code is the dead one's.
        dead = [code for code in codes if code is not None and code != -signal.SIGTERM]
        if dead and dead[0] == -signal.SIGKILL:
            how = "killed with SIGKILL: out of memory?"
        elif dead and dead[0] < 0:
            how = f"killed by signal {-dead[0]}"
        elif dead:
            how = f"exit code {dead[0]}"
        else:
            how = "killed for memory?"
        then = then or "run the same command again (with fewer workers if memory is short)"
        return f"a worker process died ({how}) while {doing}; {then}"

    def terminate(self):
        """Stop every worker now, finished or not (like ``multiprocessing.Pool.terminate``)."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        for process in self._processes:
            if process.exitcode is None:
                process.terminate()
        for process in self._processes:
            process.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.terminate()


def start_pool(workers, initializer=None, initargs=()):
    """Start ``workers`` spawned processes as a :class:`WorkerPool`; the caller terminates it.

    Parameters
    ----------
    workers : int
        Number of processes (at least 2; with 1 the callers run in-process).
    initializer, initargs
        As for :class:`multiprocessing.pool.Pool`.
    """
    return WorkerPool(workers, initializer, initargs)


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
