"""How a run ends when it is stopped: Ctrl-C, SIGTERM or an uncaught error become one line and a marked run.

:class:`common.run.Run` installs these when it starts. On a terminal, Ctrl-C
(SIGINT) and SIGTERM print one line saying what was interrupted and what a re-run
keeps, mark the run ``"interrupted"`` in ``metrics.json``, and exit with status 130
(143 for SIGTERM) without a traceback; an uncaught error marks it ``"failed"``. In a
notebook the kernel keeps its own interrupt, and the run is marked when the cell stops.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any


class _Terminated(BaseException):
    """Raised in the main thread by SIGTERM, so it unwinds like Ctrl-C."""


def _interrupt_line(run, what: str) -> str:
    where = f" during {run.current}" if run.current else ""
    seconds = time.perf_counter() - run._session_start
    kept = (f"kept in {run.out}: {run.kept()}" if run._begun else f"nothing was written to {run.out}")
    return (f"{run.script}: interrupted by {what}{where} after {seconds:.0f} s; "
            f"run the same command again to resume ({kept}).")


def install_handlers(run) -> None:
    """Ctrl-C / SIGTERM: one line, the run marked interrupted, exit 130 / 143, no traceback."""
    import signal

    def exit_interrupted(what: str) -> None:
        where = f" during {run.current}" if run.current else ""
        run.stop("interrupted", f"{what}{where}")
        sys.stdout.flush()
        print("\n" + _interrupt_line(run, what), file=sys.stderr, flush=True)
        os._exit(143 if what == "SIGTERM" else 130)  # skip TensorFlow's slow, noisy teardown

    def exit_if_swallowed(what: str) -> None:
        # Python drops an exception raised inside a finalizer or weakref callback ("Exception
        # ignored in ..."), which the signal can land in while TensorFlow traces a function:
        # if the run is still going a moment later, stop it from here.
        timer = threading.Timer(3.0, exit_interrupted, args=(what,))
        timer.daemon = True
        timer.start()

    def on_sigint(signum, frame):
        exit_if_swallowed("Ctrl-C")
        raise KeyboardInterrupt

    def on_sigterm(signum, frame):
        exit_if_swallowed("SIGTERM")
        raise _Terminated()

    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not when started with Ctrl-C ignored
        signal.signal(signal.SIGINT, on_sigint)
    signal.signal(signal.SIGTERM, on_sigterm)
    previous_hook = sys.excepthook

    def hook(exc_type, exc, tb):
        if issubclass(exc_type, (KeyboardInterrupt, _Terminated)):
            exit_interrupted("SIGTERM" if exc_type is _Terminated else "Ctrl-C")
        run.stop("failed", f"{exc_type.__name__}: {exc}")
        previous_hook(exc_type, exc, tb)

    sys.excepthook = hook

    # Ctrl-C can land while Python runs a __del__ method or a weakref callback (garbage
    # collection inside any library); Python then prints "Exception ignored in ..." and
    # carries on. Such an ignored KeyboardInterrupt or SIGTERM still stops the run.
    previous_unraisable = sys.unraisablehook

    def unraisable(info):
        if info.exc_type is not None and issubclass(info.exc_type, (KeyboardInterrupt, _Terminated)):
            hook(info.exc_type, info.exc_value, info.exc_traceback)
        previous_unraisable(info)

    sys.unraisablehook = unraisable


def mark_stopped_cells(run) -> None:
    """In a notebook: when a cell stops with an error (the kernel's interrupt included), mark the
    run interrupted or failed, as the script's handlers would; signals stay the kernel's."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return

    def after_cell(result) -> None:
        error = getattr(result, "error_in_exec", None)
        if run.state.get("status") != "running":
            shell.events.unregister("post_run_cell", after_cell)
        elif error is not None:
            if isinstance(error, KeyboardInterrupt):
                where = f" during {run.current}" if run.current else ""
                run.stop("interrupted", f"kernel interrupted{where}")
                print(_interrupt_line(run, "the kernel's interrupt").replace("run the same command again",
                                                                              "run all cells again"),
                      file=sys.stderr)
            else:
                run.stop("failed", f"{type(error).__name__}: {error}")
            shell.events.unregister("post_run_cell", after_cell)

    shell.events.register("post_run_cell", after_cell)


def exit_quietly_after_finish(run) -> None:
    """After :meth:`Run.finish`: Ctrl-C / SIGTERM during the interpreter's (slow) teardown
    says that the outputs are complete and exits 130 / 143, instead of dying mid-teardown."""
    import signal

    def handler(signum, frame):
        what = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
        print(f"\n{run.script}: {what} after the run had finished: its outputs in {run.out} are complete.",
              file=sys.stderr, flush=True)
        os._exit(143 if signum == signal.SIGTERM else 130)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def interruptible(function, *args, **kwargs):
    """``function(*args, **kwargs)``, run in a helper thread so that Ctrl-C stops the run at once.

    Long C loops (scikit-learn's libsvm, for one) only let Python see Ctrl-C when they
    return, minutes later. Here the main thread waits in short steps, so the interrupt
    is handled as usual (the run's handler exits the process, helper thread and all).
    Returns what ``function`` returns and raises what it raises.
    """
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = function(*args, **kwargs)
        except BaseException as error:  # handed to the caller below
            outcome["error"] = error

    worker = threading.Thread(target=target, name=getattr(function, "__name__", "work"), daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(timeout=0.2)
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")
