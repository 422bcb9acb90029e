"""A process pool that is safe to start after TensorFlow has been imported.

Why spawn: ``fork`` copies a parent that may already run TensorFlow's thread
pools, and a child that inherits a lock held by one of those threads can hang.
Spawned workers start from a fresh interpreter and import only Pillow, hashlib,
simplejpeg and google-crc32c (``tfrecord_tools`` imports TensorFlow lazily).

Why a main guard is needed: a spawned child imports the parent's main script
again (as ``__mp_main__``) before it runs any task, with every start method but
``fork``. The course's lab scripts are top-to-bottom module code without an
``if __name__ == "__main__":`` guard, so each worker would run the whole script
again. Only public API is used here, so nothing hides the script from the
children: :func:`usable_workers` looks at the caller instead. Called from the
top level of a main script outside such a guard, it warns and uses one process
(the work is then done in the calling process, at a fraction of the speed).
Such scripts should run ``python -m tfrecord_tools write ...`` as a subprocess,
which is what a user would type, and is as fast as it can be.

Why ``concurrent.futures``: when a worker of a ``multiprocessing.Pool`` dies
(the out-of-memory killer sends SIGKILL), the pool starts a replacement and the
task the dead worker held is lost, so the parent waits forever. A
``ProcessPoolExecutor`` never replaces a worker: it fails every pending task
with ``BrokenProcessPool``, which :class:`WorkerPool` turns into a
:class:`~tfrecord_tools.errors.WorkerDiedError` that says what to do. It starts
its processes as tasks arrive, never more than there are tasks at once.
"""

import ast
import concurrent.futures
import contextlib
import inspect
import multiprocessing
import numbers
import os
import signal
import sys
import threading
import time
import warnings
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


def _is_main_guard(node):
    """True for ``if __name__ == "__main__":`` (either way round)."""
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare) or len(node.test.ops) != 1:
        return False
    if not isinstance(node.test.ops[0], ast.Eq):
        return False
    sides = [node.test.left, node.test.comparators[0]]
    names = [side.id for side in sides if isinstance(side, ast.Name)]
    strings = [side.value for side in sides if isinstance(side, ast.Constant)]
    return names == ["__name__"] and strings == ["__main__"]


def unguarded_main_script():
    """The path of the main script when the call comes from its top level outside a main guard, else None.

    A spawned worker re-runs exactly that code. Interactive sessions, notebooks,
    ``python -c`` and ``python -m tfrecord_tools`` have nothing to re-run or are guarded.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or not path:
        return None
    frame = inspect.currentframe()
    try:
        while frame is not None:
            if frame.f_globals is vars(main) and frame.f_code.co_name == "<module>":
                break
            frame = frame.f_back
        if frame is None:
            return None  # the script's top-level code is not running (called later, from a thread, ...)
        line = frame.f_lineno
    finally:
        del frame
    try:
        with open(path, encoding="utf-8") as handle:
            tree = ast.parse(handle.read())
    except (OSError, SyntaxError, ValueError):
        return path  # cannot tell: be safe
    for node in tree.body:
        if _is_main_guard(node) and node.lineno <= line <= (node.end_lineno or node.lineno):
            return None
    return path


def usable_workers(workers):
    """The number of processes to use: ``workers`` (default all cores), or 1 where more cannot work.

    Raises ValueError for a count below 1. Warns (``RuntimeWarning``) and returns 1
    when called from the top level of a script without a main guard (see the
    module docstring).
    """
    count = default_workers() if workers is None else workers
    if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 1:
        raise ValueError(f"workers must be a whole number of at least 1, got {workers!r}")
    count = int(count)
    if count > 1:
        script = unguarded_main_script()
        if script is not None:
            warnings.warn(
                f"tfrecord_tools: called from the top level of {script}, outside an 'if __name__ == "
                "\"__main__\":' block: worker processes would run that script again, so 1 process is used. "
                "Put the call under such a block, or run 'python -m tfrecord_tools write SRC OUT' "
                "(subprocess.run from a script) to use every core",
                RuntimeWarning, stacklevel=3,
            )
            return 1
    return count


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

    Workers start as tasks are submitted (never more than tasks submitted at once),
    and ignore Ctrl-C: the parent handles it. Use as a context manager, or call
    :meth:`terminate` when done. The caller's main script needs a main guard (see
    :func:`usable_workers`).
    """

    def __init__(self, workers, initializer=None, initargs=()):
        self.workers = workers
        self._executor = concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"), initializer=_prepare_worker,
            initargs=(initializer, initargs),
        )
        self._seen = []  # our worker processes (multiprocessing.Process objects), once started


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
            before = set(multiprocessing.active_children())
            with _children_ignore_ctrl_c():  # workers start inside submit(); they inherit "ignore"
                futures = [self._executor.submit(function, item) for item in items]
            self._seen.extend(set(multiprocessing.active_children()) - before - set(self._seen))
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
        codes = _exit_codes(self._seen, seconds=2.0)
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
        for process in self._seen:
            if process.exitcode is None:
                process.terminate()
        for process in self._seen:
            process.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.terminate()


def _exit_codes(processes, seconds):
    """The exit codes of ``processes`` (None for one still running after ``seconds``).

    The executor's own thread is stopping and joining the same processes at this
    moment. Of two threads that wait for one child, only one collects its status;
    the other sees "no such child" and a None exit code until the first has stored
    it. So ask again until every code is known, instead of trusting one look.
    """
    deadline = time.monotonic() + seconds
    while True:
        for process in processes:
            process.join(timeout=max(0.0, deadline - time.monotonic()))
        codes = [process.exitcode for process in processes]
        if all(code is not None for code in codes) or time.monotonic() >= deadline:
            return codes
        time.sleep(0.02)


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
