"""One run of a script in its output folder: one run at a time, resume, status, Ctrl-C, and the files it wrote.

A script makes one :class:`Run` right after parsing its flags and writes every
output through it. Training resumes through Keras' own callbacks::

    model.fit(x, y, epochs=config.epochs, callbacks=run.callbacks("cnn"))
    history = run.history("cnn")          # every epoch, also those trained before a resume

and work that is no ``fit`` (a classifier, a timed pipeline) is a *part*::

    naive = run.finished("naive") or time_the_pipeline("naive")   # which ends with run.complete(...)

Running the same command again after Ctrl-C, ``kill -9`` or a crash goes on where
the run stopped: each fit restores its last finished epoch (``BackupAndRestore``)
and finished parts are read back. A complete run is replayed the same way, in
seconds. ``--fresh``, other flags or an edited script start over.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import files, interrupts
from common.console import in_notebook, summary_line
from common.errors import UserError

RUN_STATE = "run.json"
RESUME_FOLDER = ".resume"  # checkpoints of the fits and scratch files, kept for a resume or a replay
PREVIOUS_FOLDER = "previous"  # where a complete run replaced by one with other settings is kept
# Flags that say where a run writes or how it starts, not what it computes.
NOT_FINGERPRINTED = ("out", "fresh")
_HELD_LOCKS: dict[tuple[int, int], int] = {}  # (device, inode) of each --out this process locked -> its fd


class Run:
    """What a script's run wrote into ``--out``, how far it got, and its status.

    * **One run per folder.** The run locks ``--out`` (``flock``, which the
      kernel releases when the process dies, ``kill -9`` included); a second run
      into the same folder is refused in one line, exit status 2, nothing touched.
    * **Status.** ``metrics.json`` says ``"running"`` (with the fit or part that is
      running) from the first output on, ``"interrupted"`` or ``"failed"`` when the
      run stops, and ``"complete"`` only from :meth:`finish`. ``run.json`` lists the
      files this run wrote, so a run that starts over removes exactly those.
    * **Resume.** The same settings (flags less ``--out`` and ``--fresh``) and the
      same code (SHA-256 of the script, or of a notebook's code) resume; otherwise
      the run starts over, and a complete older run is moved to ``previous/``.
    * **Ctrl-C** (or SIGTERM) prints one line saying what was kept and exits 130
      (143), no traceback. In a notebook the kernel's interrupt stays as it is and
      the run is marked when the cell stops.
    * **Multi-worker.** On a worker that is not the chief (``TF_CONFIG``), the run
      writes into a temporary folder of its own and takes no lock.

    Parameters
    ----------
    config : argparse.Namespace
        The parsed flags; ``config.out`` is the output folder, ``config.fresh`` (if
        present) forces a fresh start.
    script : str
        Short name used in messages and the summary line, e.g. ``"lab03"``.
    chief : bool, optional
        Whether this process writes ``--out``; by default read from ``TF_CONFIG``.
    code : str, optional
        What the fingerprint takes as the code; by default the SHA-256 of the file
        that ``python`` runs (or of a notebook's code cells).
    """

    def __init__(self, config, script: str, *, chief: bool | None = None, code: str | None = None) -> None:
        self.script = script
        self._session_start = time.perf_counter()
        self.settings = {key: (str(value) if isinstance(value, Path) else value)
                         for key, value in sorted(vars(config).items()) if key not in NOT_FINGERPRINTED}
        self.code_sha256 = code if code is not None else code_digest()
        self.fingerprint = _digest({"settings": self.settings, "code": self.code_sha256})
        self.is_chief = tf_config_is_chief() if chief is None else chief
        fresh = bool(getattr(config, "fresh", False))
        if self.is_chief:
            self.out = Path(config.out)
            self._made_out = not self.out.exists()
            self._lock_out()
        else:
            # A folder of its own that the same command finds again, so that a restarted
            # worker resumes with the chief (same finished parts, its own checkpoints).
            where = _digest({"out": str(Path(config.out).resolve()), "task": tf_config().get("task", {})})
            self.out = Path(tempfile.gettempdir()) / f"{script}-worker-{self.fingerprint[:8]}-{where[:8]}"
            self._made_out = False
            print(f"not the chief worker: outputs and checkpoints go to {self.out} (deleted at the end)")
        self.out.mkdir(parents=True, exist_ok=True)
        files.remove_leftovers(self.out)  # a kill -9 during a write leaves a temporary file behind
        self.current: str | None = None  # the fit or part running now
        previous = _read_state(self.out / RUN_STATE)
        self._previous, self._fresh, self._begun = previous, fresh, False
        self.resumed = bool(previous) and not fresh and previous.get("fingerprint") == self.fingerprint
        if self.resumed:
            self.state = previous
            self.resumed_parts = [name for name, part in previous["parts"].items() if part["status"] == "complete"]
            print(self._resume_message(previous), flush=True)
            self.state["sessions"] = int(previous.get("sessions", 1)) + 1
        else:
            # A new run: what an older one left in --out is replaced only once this run writes
            # its first output, so a run that stops before that (bad flags, missing data) leaves
            # the older run's outputs exactly as they were.
            self.resumed_parts = []
            if previous and previous.get("status") != "complete" and not fresh:
                print(f"{self.out} holds an unfinished run with other settings ({self._changes(previous)}): "
                      "starting over", flush=True)
            self.state = {"script": script, "fingerprint": self.fingerprint, "settings": self.settings,
                          "code_sha256": self.code_sha256, "parts": {}, "fits": {}, "files": [],
                          "sessions": 1, "seconds": 0.0}
        self.state.setdefault("fits", {})
        self._seconds_before = float(self.state.get("seconds", 0.0))
        self.state.update(status="running", pid=os.getpid(), started=time.strftime("%Y-%m-%d %H:%M:%S"),
                          running=None)
        if self.resumed:
            self._begin()
        if in_notebook():
            interrupts.mark_stopped_cells(self)
        else:
            interrupts.install_handlers(self)

    # -- outputs ------------------------------------------------------------
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
        """Save a matplotlib figure as ``out / name`` (PNG, atomically; shown in a notebook)."""
        return files.save_figure(figure, self.path(name), dpi=dpi)

    def write_json(self, name: str, data: Any) -> Path:
        """Write ``data`` as ``out / name`` (JSON, atomically)."""
        return files.write_json(self.path(name), data)

    def write_text(self, name: str, text: str) -> Path:
        """Write ``text`` as ``out / name`` (UTF-8, atomically)."""
        return files.write_text(self.path(name), text)

    def scratch(self, name: str) -> Path:
        """A folder under ``out/.resume`` for files a resume needs and a reader does not (kept, not listed)."""
        self._begin()
        folder = self.out / RESUME_FOLDER / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    # -- fits ---------------------------------------------------------------
    def callbacks(self, name: str) -> list:
        """The callbacks that make ``model.fit`` resumable and logged, for the fit called ``name``.

        ``[EpochTimer, CSVLogger, BackupAndRestore, progress]``, in that order: the timer
        adds each epoch's ``train_seconds`` and ``validation_seconds`` to its logs, the
        CSV file ``epochs_<name>.csv`` keeps every epoch's logs (appended across
        sessions), and ``BackupAndRestore`` keeps the weights, the optimizer and the
        epoch counter in ``out/.resume/<name>`` after every epoch (``double_checkpoint``:
        its writes are not atomic, so the previous backup stays until the new one is
        whole). The backup is kept after the last epoch, so the same ``fit`` called
        again restores the trained model and trains 0 epochs. A kill between the CSV
        row and the backup trains that epoch again: :meth:`history` reads the last row
        of each epoch.
        """
        import keras

        from common.training import EpochTimer, RunProgress

        self._begin()
        return [
            EpochTimer(),
            keras.callbacks.CSVLogger(str(self.path(f"epochs_{name}.csv")), append=True),
            keras.callbacks.BackupAndRestore(str(self.out / RESUME_FOLDER / name), double_checkpoint=True,
                                             delete_checkpoint=False),
            RunProgress(self, name),
        ]

    def history(self, name: str) -> dict[str, list[float]]:
        """Every epoch's logs of the fit ``name`` (``{"loss": [...], "val_accuracy": [...], ...}``).

        Read from ``epochs_<name>.csv``: the epochs trained before a resume are in it
        too, and an epoch trained twice (a kill between its CSV row and its backup)
        counts once, with its last row.
        """
        return read_epoch_log(self.out / f"epochs_{name}.csv")

    def epochs_kept(self, name: str) -> int:
        """Epochs of the fit ``name`` that its backup holds (0 before the first)."""
        return _epochs_kept(self.out, name)

    def fit_started(self, name: str, epochs: int) -> None:
        """Called as the fit ``name`` starts: say what a resume kept, and mark it running."""
        self.state["fits"][name] = {"epochs": int(epochs)}
        kept = self.epochs_kept(name)
        if 0 < kept < epochs:
            print(f"{name}: {kept} of {epochs} epochs kept; going on from epoch {kept + 1}", flush=True)
        elif kept >= epochs > 0:
            print(f"{name}: all {epochs} epochs were trained before: the trained weights are restored", flush=True)
        self._set_running(name)

    def fit_ended(self, name: str) -> None:
        """Called as the fit ``name`` ends (all its epochs trained)."""
        self._set_running(None)

    def epoch_ended(self) -> None:
        """Called after each epoch's backup: keeps ``run.json`` and ``metrics.json`` current."""
        self._save_state()
        self._write_status_metrics("running")

    # -- parts --------------------------------------------------------------
    def finished(self, part: str) -> dict | None:
        """The results of ``part`` if an earlier session of this run finished it, else None.

        Returning None also marks ``part`` as the one now running.
        """
        record = self.state["parts"].get(part)
        if record and record["status"] == "complete":
            print(f"{part}: finished earlier, results read back from {self.out / RUN_STATE}")
            return record["result"]
        self._set_running(part)
        return None

    def complete(self, part: str, result: dict) -> dict:
        """Record that ``part`` finished with ``result`` (a JSON-able dict); returns ``result``."""
        self._begin()
        self.state["parts"][part] = {"status": "complete", "result": files.jsonable(result)}
        self._set_running(None)
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
            The script's results; ``status``, ``parts``, ``total_seconds`` (all
            sessions of this run), ``session_seconds``, ``sessions`` and ``run`` are added
            (and ``data``, from ``data.describe()``, if given). ``settings`` holds every
            flag, updated with the script's own ``metrics["settings"]``.
        summary : dict
            ``{name: value}`` for the summary line; ``total_s`` (all sessions) is added,
            and ``sessions`` when the run was resumed.
        data : optional
            The dataset (anything with ``describe()`` and ``is_standin``): its
            description goes into the metrics and a stand-in is marked in the summary.

        Returns
        -------
        str, the summary line that was printed.
        """
        session_seconds = time.perf_counter() - self._session_start
        total_seconds = round(self._seconds_before + session_seconds, 1)
        sessions = int(self.state.get("sessions", 1))
        metrics = {
            "status": "complete",
            **({"data": data.describe()} if data is not None else {}),
            **metrics,
            "settings": {**self.settings, **metrics.get("settings", {})},  # every flag, and what the script adds
            "parts": {name: part["status"] for name, part in self.state["parts"].items()},
            "resumed_parts": self.resumed_parts,
            "total_seconds": total_seconds,
            "session_seconds": round(session_seconds, 1),
            "sessions": sessions,
            "run": run_info(self),
        }
        self.write_json("metrics.json", metrics)
        self.state.update(status="complete", finished=time.strftime("%Y-%m-%d %H:%M:%S"))
        self._save_state()
        if not in_notebook():  # from now on an interrupt must not mark the run interrupted
            interrupts.exit_quietly_after_finish(self)
        title = self.script + (" (stand-in data)" if getattr(data, "is_standin", False) else "")
        extra = {"sessions": sessions} if sessions > 1 else {}
        line = summary_line(title, **summary, total_s=total_seconds, **extra)
        if self.is_chief:
            print(f"outputs in {self.out}/")
        else:
            shutil.rmtree(self.out, ignore_errors=True)
        print(line, flush=True)
        return line

    def stop(self, status: str, why: str) -> None:
        """Mark the run as ``status`` ("interrupted" or "failed"), saying ``why``; outputs stay.

        A run that had written nothing leaves ``--out`` untouched (and removes it if
        it made it).
        """
        if not self._begun:
            self._release_unused_out()
            return
        self.state.update(status=status, stopped_in=self.current, why=why)
        self._save_state()
        self._write_status_metrics(status, why)

    def kept(self) -> str:
        """What a resume would keep, in words: ``"naive finished; arrays 1 of 3 epochs"``, or ``"nothing yet"``."""
        return _kept(self.state, self.out) or "nothing yet"

    # -- internals ----------------------------------------------------------
    def _lock_out(self) -> None:
        """Hold an ``flock`` on ``--out`` for the life of this process; refuse when another run holds it."""
        try:
            import fcntl
        except ImportError:  # Windows: no flock; two runs into one folder are not detected there
            return
        self.out.mkdir(parents=True, exist_ok=True)
        stat = self.out.stat()
        key = (stat.st_dev, stat.st_ino)
        if key in _HELD_LOCKS:  # this process already holds it (a notebook's Run All, again)
            return
        descriptor = os.open(self.out, os.O_RDONLY)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(descriptor)
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return  # a file system without locks (some network shares): go on unlocked
            holder = _read_state(self.out / RUN_STATE) or {}
            pid = holder.get("pid")
            who = (f"another run (pid {pid}, started {str(holder.get('started', ''))[11:16]})"
                   if holder.get("status") == "running" and _alive(pid) else "another run")
            raise UserError(f"{who} is writing {self.out}; wait for it or choose another --out") from None
        _HELD_LOCKS[key] = descriptor
        self._lock_key = key

    def _release_unused_out(self) -> None:
        """A run that wrote nothing into a folder it made removes the (empty) folder again."""
        if not self._made_out:
            return
        descriptor = _HELD_LOCKS.pop(getattr(self, "_lock_key", None), None)
        if descriptor is not None:
            os.close(descriptor)
        try:
            self.out.rmdir()  # only when still empty
        except OSError:
            pass

    def _begin(self) -> None:
        """Take over ``--out``: put the older run's files aside, write ``run.json`` and the status."""
        if self._begun:
            return
        self._begun = True
        previous = self._previous
        if previous is not None and previous is not self.state:
            self._forget(previous)
        self._save_state()
        self._write_status_metrics("running")

    def _set_running(self, name: str | None) -> None:
        self.current = name
        self.state["running"] = name
        if self._begun:  # before its first output a run leaves --out as it is
            self._save_state()
            self._write_status_metrics("running")

    def _write_status_metrics(self, status: str, why: str | None = None) -> None:
        metrics = {"status": status,
                   "finished_parts": [name for name, part in self.state["parts"].items()
                                      if part["status"] == "complete"],
                   "running_part": self.current,
                   "fits": {name: f"{self.epochs_kept(name)} of {fit['epochs']} epochs kept"
                            for name, fit in self.state["fits"].items()},
                   "note": ("this run has not finished yet (or was killed): run the same command again to resume"
                            if status == "running" else "not a complete run: run the same command again to resume")}
        if why:
            metrics["why"] = why
        files.write_json(self.out / "metrics.json", metrics)

    def _save_state(self) -> None:
        self.state["updated"] = time.strftime("%Y-%m-%d %H:%M:%S")
        self.state["seconds"] = round(self._seconds_before + time.perf_counter() - self._session_start, 1)
        files.write_json(self.out / RUN_STATE, self.state)

    def _changes(self, previous: dict) -> str:
        old, new = previous.get("settings", {}), self.settings
        changes = [f"--{key.replace('_', '-')} {old.get(key)} -> {new.get(key)}"
                   for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]
        if previous.get("code_sha256") != self.code_sha256:
            changes.append("the code changed since")
        return ", ".join(changes) or "another version of the script"

    def _resume_message(self, previous: dict) -> str:
        status, kept = previous.get("status"), _kept(previous, self.out)
        if status == "complete":
            return (f"{self.out} holds a complete run with these settings (finished {previous.get('finished', '?')}): "
                    "replaying it (each fit restores its trained weights, finished parts are read back); "
                    "add --fresh to run it again")
        if status == "running":  # nothing marked it stopped: the process was killed
            head = (f"the last run in {self.out} (pid {previous.get('pid', '?')}) stopped without finishing "
                    "(killed?); resuming")
        else:
            head = f"resuming the {status} run in {self.out}"
        return f"{head}: {kept or 'nothing had finished yet'}; add --fresh to start over"

    def _forget(self, previous: dict) -> None:
        """Clear what an older run wrote (its manifest's files only), so nothing stale looks current.

        A *complete* run with other settings (say the real run, before a quick one into
        the same folder) is moved to ``out/previous/`` rather than deleted, replacing the
        run kept there before; anything else of it is deleted. Files the manifest does
        not list are never touched.
        """
        keep = previous.get("status") == "complete" and previous.get("fingerprint") != self.fingerprint
        kept_folder = self.out / PREVIOUS_FOLDER
        what = f"the {previous.get('status', 'older')} run in {self.out} (started {previous.get('started', '?')})"
        if keep:
            older = _read_state(kept_folder / RUN_STATE)
            replaced = (f", replacing the run kept there before (finished {older.get('finished', '?')})"
                        if older else "")
            shutil.rmtree(kept_folder, ignore_errors=True)
            print(f"{what} had other settings ({self._changes(previous)}): its files are moved to "
                  f"{kept_folder}/{replaced}", flush=True)
        elif self._fresh:
            print(f"--fresh: discarding {what}: {_kept(previous, self.out) or 'nothing had finished'}", flush=True)
        else:
            print(f"discarding {what}: {_kept(previous, self.out) or 'nothing had finished'}", flush=True)
        out = self.out.resolve()
        for name in [*previous.get("files", []), RUN_STATE]:
            candidate = (self.out / name).resolve()
            if out not in candidate.parents or not candidate.is_file():
                continue
            if keep:
                target = kept_folder / name
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(candidate, target)
            else:
                candidate.unlink()
        shutil.rmtree(self.out / RESUME_FOLDER, ignore_errors=True)


def read_epoch_log(path: str | os.PathLike) -> dict[str, list[float]]:
    """``{column: [value per epoch]}`` from a Keras ``CSVLogger`` file, the last row of each epoch.

    Rows cut short by a kill, and values that are not numbers, are left out.
    """
    rows: dict[int, dict[str, float]] = {}
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                try:
                    epoch = int(row.pop("epoch"))
                    rows[epoch] = {key: float(value) for key, value in row.items() if key and value not in ("", "NA")}
                except (TypeError, ValueError, KeyError):
                    continue
    except OSError:
        return {}
    history: dict[str, list[float]] = {}
    for epoch in sorted(rows):
        for key, value in rows[epoch].items():
            history.setdefault(key, []).append(value)
    return history


def code_digest() -> str:
    """SHA-256 of the code being run: the script's file, or in a notebook its code cells (or those run so far)."""
    if in_notebook():
        try:
            from IPython import get_ipython

            shell = get_ipython()
            notebook = shell.user_ns.get("__vsc_ipynb_file__") or os.environ.get("JPY_SESSION_NAME")
            if notebook and Path(notebook).suffix == ".ipynb" and Path(notebook).is_file():
                cells = json.loads(Path(notebook).read_text(encoding="utf-8"))["cells"]
                code = "\n".join("".join(cell["source"]) for cell in cells if cell.get("cell_type") == "code")
            else:
                code = "\n".join(shell.user_ns.get("In", []))
            return hashlib.sha256(code.encode()).hexdigest()
        except Exception:  # an unusual front end: any readable code will do, none is fine too
            return "notebook"
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    try:
        return files.file_sha256(path) if path else "unknown"
    except OSError:
        return "unknown"


def run_info(run: Run | None = None) -> dict[str, Any]:
    """Versions and machine facts worth keeping beside every metrics file."""
    import platform

    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if run is not None:
        info["code_sha256"] = run.code_sha256
    for module in ("numpy", "tensorflow", "keras", "sklearn"):
        if module in sys.modules:
            info[module] = getattr(sys.modules[module], "__version__", "?")
    return info


def tf_config() -> dict:
    """``TF_CONFIG`` as a dict, or a clear error when it is not the JSON object TensorFlow expects."""
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


def tf_config_is_chief() -> bool:
    """True unless ``TF_CONFIG`` makes this process a worker other than the chief.

    The chief is the task of type ``chief`` or, when the cluster has none, worker 0.
    """
    config = tf_config()
    task = config.get("task", {})
    if not task or task.get("type") == "chief":
        return True
    return task.get("type") == "worker" and task.get("index", 0) == 0 and "chief" not in config.get("cluster", {})


def _kept(state: dict, out: Path) -> str:
    finished = [name for name, part in state.get("parts", {}).items() if part.get("status") == "complete"]
    fits = []
    for name, fit in state.get("fits", {}).items():
        fits.append(f"{name} {_epochs_kept(out, name)} of {fit.get('epochs', '?')} epochs kept")
    return "; ".join(([f"finished: {', '.join(finished)}"] if finished else []) + fits)


def _epochs_kept(out: Path, name: str) -> int:
    metadata = files.read_json(out / RESUME_FOLDER / name / "training_metadata.json")  # BackupAndRestore's
    return int(metadata.get("epoch", 0)) if isinstance(metadata, dict) else 0


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _read_state(path: Path) -> dict | None:
    state = files.read_json(path)
    return state if isinstance(state, dict) and isinstance(state.get("parts"), dict) else None


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (OSError, TypeError, ValueError):
        return False
    return True
