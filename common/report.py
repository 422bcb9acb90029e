"""Writing what a run produced: banners, metrics JSON, figures, the summary line, run status.

:class:`Run` is what a script writes its outputs through: it keeps the manifest of
the files this run wrote, the status in ``metrics.json``, finished parts for a
resume, and turns Ctrl-C into one line and exit status 130.

Every writer here is atomic (write to a temporary name in the same folder, then
rename), so an interrupted run never leaves a half-written file that looks whole.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def banner(message: str) -> None:
    """Print ``message`` in a box that is hard to miss in a long log."""
    lines = message.strip().splitlines()
    width = max(len(line) for line in lines)
    rule = "+" + "-" * (width + 2) + "+"
    print(rule)
    for line in lines:
        print(f"| {line.ljust(width)} |")
    print(rule, flush=True)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(handle)
    temporary = Path(temporary)
    try:
        yield temporary
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual mode
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically. NumPy scalars and arrays are converted."""
    path = Path(path)
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(data, indent=2, default=_to_json) + "\n", encoding="utf-8")
    return path


def save_figure(figure, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Save a matplotlib figure as PNG atomically, show it under Jupyter, and close it.

    Under Jupyter the figure is displayed inline (once: a figure the notebook
    already showed at the end of an earlier cell is not shown again), so a
    notebook shows what the script saves.
    """
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=dpi, bbox_inches="tight")
    number = getattr(figure, "number", None)  # None: a Figure made without pyplot, never shown yet
    if _running_in_jupyter() and (number is None or plt.fignum_exists(number)):
        from IPython.display import display

        display(figure)
    plt.close(figure)
    return path


def run_info() -> dict[str, Any]:
    """Versions and machine facts worth keeping beside every metrics file."""
    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    for module in ("numpy", "tensorflow", "keras", "sklearn"):
        if module in sys.modules:
            info[module] = getattr(sys.modules[module], "__version__", "?")
    return info


def summary_line(title: str, **values: Any) -> str:
    """One line such as ``lab01 | softmax_accuracy=0.9244 | cnn_accuracy=0.9912 | total_s=81.2``."""
    parts = [title]
    for key, value in values.items():
        if isinstance(value, float):
            # Seconds always with one decimal, rates and the like below 10 with four.
            value = f"{value:.1f}" if key.endswith("_s") or abs(value) >= 10 else f"{value:.4f}"
        parts.append(f"{key}={value}")
    return " | ".join(parts)


class Stopwatch:
    """Wall-clock seconds since creation (``perf_counter``)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start


def _to_json(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


# ---------------------------------------------------------------------------
# One run of a script into its output folder: status, manifest, parts, resume.
# ---------------------------------------------------------------------------

RUN_STATE = "run.json"
RESUME_FOLDER = ".resume"
PREVIOUS_FOLDER = "previous"  # where a complete run replaced by one with other settings is kept
# Flags that say where a run writes or how it starts, not what it computes: a run with
# another --out or --fresh is still the same run.
NOT_FINGERPRINTED = ("out", "fresh")


class Run:
    """What a script's run wrote into ``--out``, which of its parts finished, and its status.

    A script makes one ``Run`` right after parsing its flags and writes every output
    through it (:meth:`save_figure`, :meth:`write_json`, :meth:`path`), so the run
    keeps a manifest (``run.json``) of the files *this* run wrote. ``metrics.json``
    says ``"status": "running"`` from the start, ``"interrupted"`` or ``"failed"``
    with the parts that had finished, and ``"complete"`` only from :meth:`finish`.

    A script with long parts (a model's training, a pipeline's timed run) asks for
    each part's results first::

        naive = run.finished("naive")      # read back if an interrupted run finished it
        if naive is None:
            naive = ...                    # compute it
            run.complete("naive", naive)   # a JSON-able dict

    Running the same command again after Ctrl-C, ``kill -9`` or a crash resumes:
    finished parts are read back, the rest is computed. It resumes only when the
    settings match the interrupted run's (a fingerprint of the flags, less ``--out``
    and ``--fresh``); otherwise, or with ``--fresh``, it starts over and deletes the
    files the older run had written (never anything else in the folder).

    Ctrl-C (or SIGTERM) prints one line saying what was interrupted and how to
    resume, and exits with status 130 (143 for SIGTERM), no traceback. Under
    Jupyter no handler is installed: the kernel's own interrupt stays as it is.

    On a multi-worker run's other workers (``TF_CONFIG`` names another chief), the
    run writes into a temporary folder of its own, so only the chief writes ``--out``.

    Parameters
    ----------
    config : argparse.Namespace
        The parsed flags; ``config.out`` is the output folder, ``config.fresh``
        (if present) forces a fresh start.
    script : str
        Short name used in messages and the summary line, e.g. ``"lab03"``.
    chief : bool, optional
        Whether this process writes ``--out``; by default read from ``TF_CONFIG``.
    """

    def __init__(self, config, script: str, *, chief: bool | None = None) -> None:
        self.script = script
        self.clock = Stopwatch()
        self.settings = {
            key: (str(value) if isinstance(value, Path) else value)
            for key, value in sorted(vars(config).items())
            if key not in NOT_FINGERPRINTED
        }
        self.fingerprint = _fingerprint(self.settings)
        self.is_chief = _tf_config_is_chief() if chief is None else chief
        if self.is_chief:
            self.out = Path(config.out)
        else:
            # A folder of its own that the same command finds again, so that a restarted
            # worker resumes with the chief (same finished parts, its own checkpoints).
            where = _fingerprint({"out": str(Path(config.out).resolve()), "task": _tf_config_task()})
            self.out = Path(tempfile.gettempdir()) / f"{script}-worker-{self.fingerprint[:8]}-{where[:8]}"
            print(f"not the chief worker: outputs and checkpoints go to {self.out} (deleted at the end)")
        self.out.mkdir(parents=True, exist_ok=True)
        # A kill -9 during a write leaves atomic_path's temporary file behind: never an output.
        for leftover in self.out.rglob(".*.partial"):
            if leftover.is_file():
                leftover.unlink(missing_ok=True)
        self.current_part: str | None = None
        self.resumed_parts: list[str] = []
        previous = _read_json_or_none(self.out / RUN_STATE)
        fresh = bool(getattr(config, "fresh", False))
        if previous and not fresh and previous.get("fingerprint") == self.fingerprint \
                and previous.get("status") != "complete":
            self.state = previous
            self.resumed_parts = [name for name, part in self.state["parts"].items() if part["status"] == "complete"]
            done = ", ".join(self.resumed_parts) or "none yet"
            print(f"resuming the {previous.get('status', 'stopped')} run in {self.out} (finished parts: {done}); "
                  f"add --fresh to start over")
        else:
            # A new run: what an older one left in --out is replaced only once this run writes
            # its first output, so a run that stops before that (bad flags, missing data) leaves
            # the older run's outputs exactly as they were.
            self._previous, self._fresh = previous, fresh
            if previous and previous.get("status") != "complete" and not fresh \
                    and previous.get("fingerprint") != self.fingerprint:
                changed = _changed_settings(previous.get("settings", {}), self.settings)
                print(f"{self.out} holds an unfinished run with other settings ({changed}): starting over")
            self.state = {"script": script, "fingerprint": self.fingerprint, "settings": self.settings,
                          "parts": {}, "files": []}
        self.state.update(status="running", pid=os.getpid(), started=time.strftime("%Y-%m-%d %H:%M:%S"))
        self._begun = False
        if self.resumed_parts or previous is self.state:
            self._begin()
        self._handles_signals = not _running_in_jupyter()
        if self._handles_signals:
            _install_interrupt_handlers(self)
        else:
            _mark_stopped_cells(self)

    # -- outputs ------------------------------------------------------------
    def _begin(self) -> None:
        """Take over ``--out``: put the older run's files aside, write ``run.json`` and the status."""
        if self._begun:
            return
        self._begun = True
        previous = getattr(self, "_previous", None)
        if previous:
            self._forget(previous, self._fresh)
        self._save_state()
        self._write_status_metrics("running")

    def path(self, name: str) -> Path:
        """``out / name``, recorded in the manifest as written by this run (parent folders made)."""
        self._begin()
        path = self.out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name not in self.state["files"]:
            self.state["files"].append(name)
            self._save_state()
        return path

    def save_figure(self, figure, name: str, dpi: int = 120) -> Path:
        """Save a matplotlib figure as ``out / name`` (PNG, atomically); see :func:`save_figure`."""
        return save_figure(figure, self.path(name), dpi=dpi)

    def write_json(self, name: str, data: Any) -> Path:
        """Write ``data`` as ``out / name`` (JSON, atomically)."""
        return write_json(self.path(name), data)

    def write_text(self, name: str, text: str) -> Path:
        """Write ``text`` as ``out / name`` (UTF-8, atomically)."""
        path = self.path(name)
        with atomic_path(path) as temporary:
            temporary.write_text(text, encoding="utf-8")
        return path

    def backup_dir(self, part: str) -> Path:
        """A folder under ``out/.resume`` for a part's checkpoints (removed by :meth:`finish`)."""
        self._begin()
        folder = self.out / RESUME_FOLDER / part
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    # -- parts --------------------------------------------------------------
    def finished(self, part: str) -> dict | None:
        """The results of ``part`` if it finished before (in a run being resumed), else None.

        Returning None also marks ``part`` as the one now running, for the
        interrupt message.
        """
        record = self.state["parts"].get(part)
        if record and record["status"] == "complete":
            print(f"{part}: finished in the interrupted run, results read back from {self.out / RUN_STATE}")
            return record["result"]
        self.current_part = part
        return None

    def complete(self, part: str, result: dict) -> dict:
        """Record that ``part`` finished with ``result`` (a JSON-able dict); returns ``result``."""
        self._begin()
        self.state["parts"][part] = {"status": "complete", "result": _jsonable(result)}
        self.current_part = None
        self._save_state()
        self._write_status_metrics("running")
        return result

    def skip(self, part: str, reason: str) -> None:
        """Record that ``part`` was not run, and print ``reason`` on one line."""
        self._begin()
        self.state["parts"][part] = {"status": "skipped", "reason": reason}
        self._save_state()
        print(f"{part}: skipped ({reason})")

    @property
    def skipped(self) -> dict[str, str]:
        """``{part: reason}`` for the parts recorded with :meth:`skip`."""
        return {name: part["reason"] for name, part in self.state["parts"].items() if part["status"] == "skipped"}

    # -- the end ------------------------------------------------------------
    def finish(self, metrics: dict, summary: dict, *, data=None) -> str:
        """Write ``metrics.json`` as complete, print where the outputs are and the summary line.

        Parameters
        ----------
        metrics : dict
            The script's results; ``status``, ``parts``, ``total_seconds`` and
            ``run`` are added (and ``data``, from ``data.describe()``, if given).
        summary : dict
            ``{name: value}`` for the summary line; ``total_s`` is added.
        data : optional
            The dataset object (anything with ``describe()`` and ``is_standin``):
            its description goes into the metrics and a stand-in is marked in the
            summary line.

        Returns
        -------
        str
            The summary line that was printed.
        """
        total_seconds = round(self.clock.seconds, 1)
        standin = bool(getattr(data, "is_standin", False))
        metrics = {
            "status": "complete",
            **({"data": data.describe()} if data is not None else {}),
            **metrics,
            "parts": self._part_statuses(),
            "resumed_parts": self.resumed_parts,
            "total_seconds": total_seconds,
            "run": run_info(),
        }
        self.write_json("metrics.json", metrics)
        self.state["status"] = "complete"
        self.state["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
        self._save_state()
        if self._handles_signals:  # from now on an interrupt must not mark the run interrupted
            _exit_quietly_on_interrupt(self)
        shutil.rmtree(self.out / RESUME_FOLDER, ignore_errors=True)
        title = self.script + (" (stand-in data)" if standin else "")
        line = summary_line(title, **summary, total_s=total_seconds)
        if self.is_chief:
            print(f"outputs in {self.out}/")
        else:
            shutil.rmtree(self.out, ignore_errors=True)
        print(line, flush=True)
        return line

    def stop(self, status: str, why: str) -> None:
        """Mark the run as ``status`` ("interrupted" or "failed"), saying ``why``; outputs stay.

        A run that had written nothing yet leaves ``--out`` untouched (an older run's
        outputs stay as they were).
        """
        if not self._begun:
            return
        self.state["status"] = status
        self.state["stopped_in"] = self.current_part
        self.state["why"] = why
        self._save_state()
        self._write_status_metrics(status, why)

    # -- internals ----------------------------------------------------------
    def _part_statuses(self) -> dict[str, str]:
        return {name: part["status"] for name, part in self.state["parts"].items()}

    def _write_status_metrics(self, status: str, why: str | None = None) -> None:
        finished = [name for name, part in self.state["parts"].items() if part["status"] == "complete"]
        metrics = {"status": status, "finished_parts": finished, "running_part": self.current_part,
                   "note": "not a complete run: run the same command again to resume" if status != "running"
                   else "this run has not finished yet (or was killed): run the same command again to resume"}
        if why:
            metrics["why"] = why
        write_json(self.out / "metrics.json", metrics)

    def _save_state(self) -> None:
        self.state["updated"] = time.strftime("%Y-%m-%d %H:%M:%S")
        write_json(self.out / RUN_STATE, self.state)

    def _forget(self, previous: dict, fresh: bool) -> None:
        """Clear what an older run wrote (its manifest's files only), so nothing stale looks current.

        A *complete* run with other settings (say the real run, before a quick one into
        the same folder) is moved to ``out/previous/`` rather than deleted; anything else
        of it is deleted. Files the manifest does not list are never touched.
        """
        changed = _changed_settings(previous.get("settings", {}), self.settings)
        keep = previous.get("status") == "complete" and previous.get("fingerprint") != self.fingerprint
        kept = self.out / PREVIOUS_FOLDER
        if keep:
            shutil.rmtree(kept, ignore_errors=True)
            print(f"{self.out} holds a complete run with other settings ({changed}): its files are moved to "
                  f"{kept}/")
        out = self.out.resolve()
        for name in [*previous.get("files", []), RUN_STATE]:
            candidate = (self.out / name).resolve()
            if out not in candidate.parents or not candidate.is_file():
                continue
            if keep:
                target = kept / name
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(candidate, target)
            else:
                candidate.unlink()
        shutil.rmtree(self.out / RESUME_FOLDER, ignore_errors=True)


def _fingerprint(settings: dict) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _changed_settings(old: dict, new: dict) -> str:
    changes = [f"--{key.replace('_', '-')} {old.get(key)} -> {new.get(key)}"
               for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]
    return ", ".join(changes) or "a different script version"


def _read_json_or_none(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("parts"), dict) else None


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=_to_json))


def _tf_config() -> dict:
    """``TF_CONFIG`` as a dict, or a clear error when it is not the JSON object TensorFlow expects."""
    from common.errors import UserError

    text = os.environ.get("TF_CONFIG") or "{}"
    try:
        config = json.loads(text)
    except ValueError as error:
        raise UserError(f"TF_CONFIG is not valid JSON ({error}): expected something like "
                        '{"cluster": {"worker": ["host-a:23456", "host-b:23456"]}, "task": {"type": "worker", '
                        '"index": 0}} (README: Scaling out)') from None
    if not isinstance(config, dict) or not isinstance(config.get("task", {}), dict):
        raise UserError(f"TF_CONFIG must be a JSON object with 'cluster' and 'task', got {text[:200]}")
    return config


def _tf_config_is_chief() -> bool:
    """True unless ``TF_CONFIG`` makes this process a non-chief worker (no TensorFlow needed)."""
    config = _tf_config()
    task = config.get("task", {})
    if not task or task.get("type") == "chief":
        return True
    return task.get("type") == "worker" and task.get("index", 0) == 0 and "chief" not in config.get("cluster", {})


def _tf_config_task() -> dict:
    return _tf_config().get("task", {})


def _running_in_jupyter() -> bool:
    return "ipykernel" in sys.modules


def _install_interrupt_handlers(run: Run) -> None:
    """Ctrl-C / SIGTERM: one line, the run marked interrupted, exit 130 / 143, no traceback."""
    import signal

    def exit_interrupted(what: str) -> None:
        part = f" during {run.current_part}" if run.current_part else ""
        run.stop("interrupted", f"{what}{part}")
        sys.stdout.flush()
        finished = [name for name, record in run.state["parts"].items() if record["status"] == "complete"]
        kept = (f"finished parts ({', '.join(finished)}) are kept in {run.out}" if finished
                else "nothing had finished yet" if run._begun else f"nothing was written to {run.out}")
        print(f"\n{run.script}: interrupted by {what}{part} after {run.clock.seconds:.0f} s; "
              f"run the same command again to resume ({kept}).", file=sys.stderr, flush=True)
        os._exit(143 if what == "SIGTERM" else 130)  # skip TensorFlow's slow, noisy teardown

    def exit_if_swallowed(what: str) -> None:
        # Python drops an exception raised inside a finalizer or weakref callback ("Exception
        # ignored in ..."), which the signal can land in while TensorFlow traces a function:
        # if the run is still going a moment later, stop it from here.
        import threading

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
    # carries on, and the run would finish as if nothing happened. Such an ignored
    # KeyboardInterrupt or SIGTERM still stops the run, the same way.
    previous_unraisable = sys.unraisablehook

    def unraisable(info):
        if info.exc_type is not None and issubclass(info.exc_type, (KeyboardInterrupt, _Terminated)):
            hook(info.exc_type, info.exc_value, info.exc_traceback)
        previous_unraisable(info)

    sys.unraisablehook = unraisable


def _mark_stopped_cells(run: Run) -> None:
    """Under Jupyter: when a cell stops with an error (the kernel's interrupt included), mark the
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
            part = f" during {run.current_part}" if run.current_part else ""
            if isinstance(error, KeyboardInterrupt):
                run.stop("interrupted", f"kernel interrupted{part}")
                print(f"{run.script}: interrupted{part}; run all cells again to resume "
                      f"(finished parts are kept in {run.out}).", file=sys.stderr)
            else:
                run.stop("failed", f"{type(error).__name__}: {error}")
            shell.events.unregister("post_run_cell", after_cell)

    shell.events.register("post_run_cell", after_cell)


def _exit_quietly_on_interrupt(run: Run) -> None:
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


class _Terminated(BaseException):
    """Raised in the main thread by SIGTERM, so it unwinds like Ctrl-C."""


# ---------------------------------------------------------------------------
# Progress that stays readable in a log file.
# ---------------------------------------------------------------------------

def interactive() -> bool:
    """True when a person watches the output live: a terminal or a notebook."""
    return _running_in_jupyter() or sys.stdout.isatty()


def keras_verbose() -> str | int:
    """``verbose=`` for ``fit``/``evaluate``: progress bars on a terminal or in a notebook,
    one line per epoch (``2``) when the output goes to a file or a pipe."""
    return "auto" if interactive() else 2


def progress(iterable=None, *, total: int | None = None, desc: str | None = None, unit: str = "it"):
    """``tqdm`` on a terminal or in a notebook; in a log file, one line when the loop ends.

    Returns a tqdm bar (usable as an iterable or with ``update(n)``): a widget in a
    notebook when ipywidgets is installed, else tqdm's text bar (which notebooks show
    as well), without tqdm's "IProgress not found" warning.
    """
    import importlib.util

    if _running_in_jupyter() and importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.notebook import tqdm
    else:
        from tqdm import tqdm

    if interactive():
        return tqdm(iterable, total=total, desc=desc, unit=unit)
    return _LoggedProgress(iterable, total=total, desc=desc, unit=unit)


class _LoggedProgress:
    """The part of tqdm's interface the scripts use, printing one line at the end (for log files)."""

    def __init__(self, iterable, *, total, desc, unit) -> None:
        self.iterable, self.desc, self.unit = iterable, desc or "progress", unit
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.n = 0
        self.clock = Stopwatch()
        self._closed = False

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.n += 1
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            seconds = self.clock.seconds
            rate = f", {self.n / seconds:,.0f} {self.unit}/s" if seconds > 0 else ""
            print(f"{self.desc}: {self.n:,} {self.unit} in {seconds:.1f} s{rate}", flush=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def count(number: int, noun: str) -> str:
    """``count(1, "epoch")`` -> ``"1 epoch"``, ``count(3, "epoch")`` -> ``"3 epochs"``."""
    return f"{number:,} {noun}" + ("" if number == 1 else "s")


def interruptible(function, *args, **kwargs):
    """``function(*args, **kwargs)``, run in a helper thread so that Ctrl-C stops the run at once.

    Long C loops (scikit-learn's libsvm, for one) only let Python see Ctrl-C when they
    return, minutes later. Here the main thread waits in short steps, so the interrupt
    is handled as usual (the run's handler exits the process, helper thread and all).
    Returns what ``function`` returns and raises what it raises.
    """
    import threading

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
