"""The output folder of a write: checked, locked, inspected, and its finished shards reused or repaired.

What a write may find in OUT, and what it does:

* nothing, or only files a file browser leaves (``.DS_Store``): a new dataset;
* a finished dataset (``dataset.json`` of ours and the shards it lists): kept when
  the new plan is exactly its shards, repaired when only some shard files are
  damaged or missing, replaced only with ``overwrite``;
* shards of an interrupted write (listed in the progress file): each kept when
  its plan digest and SHA-256 still match, so a re-run finishes the job;
* anything else (a file we did not write, a file merely named like a shard):
  refused, and nothing is changed.

A write holds an advisory lock on the folder the whole time (:func:`exclusive_use`).
"""

import contextlib
import dataclasses
import hashlib
import json
import os

from . import __version__
from .errors import OutputFolderError, option_name
from .record_io import iter_file_records, parse_example_bytes
from .sidecar import (
    FEATURES,
    FORMAT_VERSION,
    INCOMPLETE_PREFIX,
    OS_METADATA_NAMES,
    PROGRESS_NAME,
    SIDECAR_NAME,
    incomplete_path,
    is_our_file,
    is_tfrecord_tools_sidecar,
    parse_shard_name,
)


def create(out, source, source_folders):
    """Create OUT (if new) after checking it is a folder apart from SRC that we can write into.

    Parameters
    ----------
    out, source : str
        Absolute real paths.
    source_folders : dict
        ``(device, inode)`` of SRC, its split and its class folders to a description
        (:func:`tfrecord_tools.find.own_folders`). OUT must not lie in any of them,
        however it is reached: through a link (``SRC/cat -> /data/cat`` and OUT
        ``/data/cat/records``) or a mount, where paths do not show it.

    Returns True when OUT was created here (a failed write then removes it again).
    """
    if os.path.commonpath([out, source]) == source:
        raise OutputFolderError(f"output folder {out} is inside the source folder {source}; choose another")
    if os.path.commonpath([out, source]) == out:
        raise OutputFolderError(f"output folder {out} contains the source folder {source}; choose another")
    holder = _first_in(out, source_folders)
    if holder is not None:
        path, what = holder
        raise OutputFolderError(
            f"output folder {out} is inside {what}: {path} is that folder, reached through a symbolic link or a "
            "mount, and the next write would read the shards (and any contact sheet) as photos. Choose a folder "
            "outside the source folder. Nothing was changed."
        )
    if os.path.isdir(out) and _first_in(source, {_key(out): "the output folder"}) is not None:
        raise OutputFolderError(f"output folder {out} contains the source folder {source} (reached through a "
                                "symbolic link or a mount); choose another. Nothing was changed.")
    if os.path.exists(out) and not os.path.isdir(out):
        raise OutputFolderError(f"output {out} is a file; expected a folder (new or written by this tool)")
    created = not os.path.exists(out)
    try:
        os.makedirs(out, exist_ok=True)
        probe = incomplete_path(os.path.join(out, "write-test"))
        with open(probe, "wb"):
            pass
        os.remove(probe)
    except OSError as error:
        if created:
            remove_if_empty(out)
        raise OutputFolderError(
            f"cannot write into the output folder {out}: {error.strerror or error}; choose a folder you can write "
            "to. Nothing was changed."
        ) from None
    return created


def _key(path):
    information = os.stat(path)
    return information.st_dev, information.st_ino


def _first_in(path, folders):
    """``(folder, description)`` of the first of ``path`` and its ancestors that is one of ``folders``, or None."""
    folder = path
    while True:
        try:
            description = folders.get(_key(folder))
        except OSError:  # not there (yet): only what exists can be the same folder
            description = None
        if description is not None:
            return folder, description
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def remove_if_empty(out):
    """After a failed write into a folder it created: leave no empty OUT behind."""
    try:
        if not [name for name in os.listdir(out) if not name.startswith(INCOMPLETE_PREFIX)]:
            for name in os.listdir(out):
                os.remove(os.path.join(out, name))
            os.rmdir(out)
    except OSError:
        pass


@contextlib.contextmanager
def exclusive_use(out):
    """Hold an advisory lock on the folder OUT while a write runs in it.

    A second write into the same folder (another terminal, a notebook cell run
    twice) then stops at once instead of mixing its shards with ours. The lock
    is on the folder itself (``flock``), so no lock file is left behind, and the
    system releases it when the process ends, even after a crash or SIGKILL.
    Where locks are unsupported (Windows, some network file systems) nothing is
    locked.
    """
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    descriptor = os.open(out, os.O_RDONLY)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputFolderError(
                f"another tfrecord_tools write is running in {out}; wait for it to finish or choose another "
                "folder. Nothing was changed."
            ) from None
        except OSError:
            pass  # the file system has no locks: go on unlocked
        yield
    finally:
        os.close(descriptor)  # releases the lock


def inspect(out):
    """Check that OUT holds nothing but our own files.

    Returns
    -------
    (earlier, finished_shards)
        ``earlier``: the finished shards an earlier run left (from its sidecar or
        its progress file), keyed by file name, each a dict with ``bytes``,
        ``sha256`` and ``plan_sha256``. ``finished_shards``: the names of the
        shards that the finished dataset's sidecar lists (None when there is no
        finished dataset).

    Raises
    ------
    OutputFolderError
        OUT holds a file we did not write, a ``dataset.json`` that is not ours, or
        shard files with neither a sidecar nor a progress file.
    """
    names = sorted(os.listdir(out))
    # A file browser's .DS_Store or Thumbs.db is neither ours nor in the way: left alone.
    foreign = [name for name in names if not is_our_file(name) and name not in OS_METADATA_NAMES]
    # A file merely named like a shard is ours only when a record of ours lists it, or when it
    # holds records of our layout (a shard renamed into place just before a crash).
    listed = _listed_shards(out)
    foreign += [name for name in names
                if parse_shard_name(name) and name not in listed and not _holds_our_records(os.path.join(out, name))]
    foreign.sort()
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise OutputFolderError(
            f"output folder {out} already holds files that tfrecord_tools did not write ({shown}); "
            "choose an empty or new folder. Nothing was changed."
        )
    has_sidecar = SIDECAR_NAME in names
    if has_sidecar and not is_tfrecord_tools_sidecar(os.path.join(out, SIDECAR_NAME)):
        raise OutputFolderError(
            f"output folder {out} holds a {SIDECAR_NAME} that tfrecord_tools did not write (no \"tool\": "
            "\"tfrecord_tools\" in it); choose an empty or new folder. Nothing was changed."
        )
    has_progress = PROGRESS_NAME in names
    shards_without_record = [name for name in names if parse_shard_name(name)]
    if shards_without_record and not (has_sidecar or has_progress):
        raise OutputFolderError(
            f"output folder {out} holds shard files ({shards_without_record[0]}, ...) but no {SIDECAR_NAME}: "
            "they may come from another tool. Choose an empty or new folder. Nothing was changed."
        )
    earlier = {}
    finished_shards = None
    if has_sidecar:
        finished_shards = set()
        try:
            for shard in _sidecar_shards(out):
                earlier[shard["file"]] = shard
                finished_shards.add(shard["file"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            earlier = {}
    earlier.update(read_progress(out))
    return earlier, finished_shards


def _sidecar_shards(out):
    """The shard entries of OUT's ``dataset.json``, as written (no structure checked)."""
    with open(os.path.join(out, SIDECAR_NAME), encoding="utf-8") as handle:
        sidecar = json.load(handle)
    return [shard for split in sidecar["splits"].values() for shard in split["shards"]]


def _listed_shards(out):
    """Names of the shards that OUT's sidecar (when ours) and progress file list."""
    listed = set(read_progress(out))
    path = os.path.join(out, SIDECAR_NAME)
    if os.path.exists(path) and is_tfrecord_tools_sidecar(path):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError, AttributeError):
            listed.update(shard["file"] for shard in _sidecar_shards(out))
    return listed


def _holds_our_records(path):
    """True when the file's first record is intact and holds every feature that ``write`` stores."""
    try:
        with open(path, "rb") as handle:
            for _, _, record in iter_file_records(handle, check_crc=True):
                return set(FEATURES) <= set(parse_example_bytes(record))
    except (OSError, ValueError):
        return False
    return False  # no record at all: every shard we write holds at least one


# ---------------------------------------------------------------------------
# The progress file: one line per finished shard, so that a re-run after a crash keeps it


def start_progress(out):
    """Create the progress file before the first shard is renamed into place.

    It is what tells a re-run after a crash that the shard files in OUT are ours,
    even when the crash (or a full disk) came before the first shard's line.
    """
    _append_line(out, {"write_started": True, "tool_version": __version__})


def append_progress(out, result):
    """Record a finished shard (``file``, ``bytes``, ``sha256``, ``plan_sha256``, ...)."""
    _append_line(out, result)


def _append_line(out, content):
    # One os.write of a short line with O_APPEND is atomic on local file systems,
    # so workers can append without a lock.
    line = (json.dumps(content, ensure_ascii=True) + "\n").encode("ascii")
    descriptor = os.open(os.path.join(out, PROGRESS_NAME), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, line)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def read_progress(out):
    """The finished shards the progress file lists, keyed by file name (empty without the file)."""
    finished = {}
    try:
        with open(os.path.join(out, PROGRESS_NAME), encoding="ascii", errors="replace") as handle:
            for line in handle:
                try:
                    result = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a crash
                if isinstance(result, dict) and isinstance(result.get("file"), str):
                    finished[result["file"]] = result
    except FileNotFoundError:
        pass
    return finished


def finish_progress(out):
    """The dataset is described by its sidecar now: the progress file goes."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(out, PROGRESS_NAME))


# ---------------------------------------------------------------------------
# Reuse and repair


def file_sha256(path):
    """Hex SHA-256 of a file's bytes, read in blocks."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _still_valid(out, record, plan):
    """A shard from an earlier run may be kept if plan and bytes still match."""
    path = os.path.join(out, plan["file"])
    return (
        record is not None
        and record.get("plan_sha256") == plan["plan_sha256"]
        and os.path.isfile(path)
        and os.path.getsize(path) == record.get("bytes")
        and file_sha256(path) == record.get("sha256")
    )


@dataclasses.dataclass(frozen=True)
class Reuse:
    """What a write keeps of what it found in OUT.

    Attributes
    ----------
    shards : dict
        File name to the earlier run's record, for every planned shard whose plan
        digest and bytes still match: not written again.
    replaces_finished : bool
        A finished dataset is there and the new plan differs from it: its sidecar
        must go before any shard changes.
    repaired : list of str
        Shards of a finished dataset made from the same plan that were damaged or
        missing: written again from the source.
    """

    shards: dict
    replaces_finished: bool
    repaired: list


def plan_reuse(out, plans, earlier, finished_shards, *, overwrite, differences):
    """Decide which earlier shards to keep; refuse to replace a finished dataset without ``overwrite``.

    Parameters
    ----------
    out : str
    plans : list of dict
        From :func:`tfrecord_tools.plan.plan_shards`.
    earlier, finished_shards
        From :func:`inspect`.
    overwrite : bool
    differences : callable
        Returns what the finished dataset records differently from this run's
        settings (list of messages); called only to word a refusal.

    Returns
    -------
    Reuse

    Raises
    ------
    OutputFolderError
        A finished dataset made from another plan, and ``overwrite`` is false.
    """
    had_sidecar = finished_shards is not None
    planned_files = {plan["file"] for plan in plans}
    reusable = {plan["file"]: earlier[plan["file"]] for plan in plans
                if _still_valid(out, earlier.get(plan["file"]), plan)}
    # A finished dataset is kept only if the new plan is exactly its shards: fewer shards
    # (a split gone from SRC, say) would delete finished ones, more would change it.
    changed = len(reusable) < len(plans) or (had_sidecar and finished_shards != planned_files)
    # The same inputs and settings, but a shard damaged or missing: written again from SRC,
    # as after a crash (its bytes are fixed by the plan).
    same_plan = had_sidecar and finished_shards == planned_files and all(
        (earlier.get(plan["file"]) or {}).get("plan_sha256") == plan["plan_sha256"] for plan in plans)
    if had_sidecar and changed and not same_plan and not overwrite:
        gone = sorted(finished_shards - planned_files)
        what = (f" (its shards {gone[0]}{' and more' if len(gone) > 1 else ''} are not in the new plan)"
                if gone else "")
        found = differences()
        edited = [] if found or finished_shards != planned_files else _digests_alone_differ(out, plans, earlier)
        if edited:
            raise OutputFolderError(
                f"output folder {out} holds a finished dataset of the same images, split and settings as this run, "
                f"but its {SIDECAR_NAME} records other plan digests (plan_sha256) for {', '.join(edited[:3])}"
                f"{' and more' if len(edited) > 3 else ''}: {SIDECAR_NAME} was changed after the write. Check the "
                f"folder with 'verify', then pass {option_name('--overwrite', 'overwrite=True')} to write the dataset "
                "again. Nothing was changed."
            )
        made = (f"with other settings ({'; '.join(found)})" if found
                else "from other inputs (the images under the source folder, or the shard size, differ)")
        raise OutputFolderError(
            f"output folder {out} holds a finished dataset made {made}{what}; "
            f"pass {option_name('--overwrite', 'overwrite=True')} to replace it, or choose another folder. "
            "Nothing was changed."
        )
    repaired = sorted(planned_files - set(reusable)) if same_plan else []
    return Reuse(reusable, bool(had_sidecar and changed), repaired)


def _digests_alone_differ(out, plans, earlier):
    """The shards whose recorded plan digest alone differs from the plan (their files hold the planned images).

    Empty when any shard whose digest differs holds other images, or other bytes
    than the sidecar says: then the inputs did change.
    """
    edited = []
    for plan in plans:
        record = earlier.get(plan["file"]) or {}
        if record.get("plan_sha256") == plan["plan_sha256"]:
            continue
        path = os.path.join(out, plan["file"])
        planned = [(image.relative_path, image.sha256, image.label, int(image.reencode)) for image in plan["images"]]
        try:
            if os.path.getsize(path) != record.get("bytes") or file_sha256(path) != record.get("sha256"):
                return []
            with open(path, "rb") as handle:
                held = []
                for _, _, payload in iter_file_records(handle):
                    features = parse_example_bytes(payload)
                    held.append((features["image/filename"][0].decode("utf-8", "surrogateescape"),
                                 features["image/sha256"][0].decode("ascii"), features["image/class/label"][0],
                                 features["image/reencoded"][0]))
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            return []
        if held != planned:
            return []
        edited.append(plan["file"])
    return edited


def setting_differences(out, layout, class_names, options):
    """What the finished dataset's sidecar records differently from this run's settings ("seed 0, now 1").

    ``options`` is the run's :class:`tfrecord_tools.write.WriteOptions`; ``layout``
    and ``class_names`` are what the scan found.
    """
    stored_as = options.stored_as
    try:
        with open(os.path.join(out, SIDECAR_NAME), encoding="utf-8") as handle:
            old = json.load(handle)
        old_resize = old.get("resize") or {}
        split_given = layout == "classes"
        now = {
            "format version": FORMAT_VERSION,
            "layout": layout,
            "seed": options.seed,
            "test fraction": options.test_fraction if split_given else None,
            "validation fraction": options.val_fraction if split_given else None,
            "max side": stored_as.get("max_side"),
            "JPEG quality": options.reencode_quality,
            "JPEG quality of resized images": stored_as.get("jpeg_quality") if "max_side" in stored_as else None,
            "EXIF orientation applied": bool(stored_as.get("apply_orientation")),
            "max pixels": options.max_pixels,
            "classes": class_names,
        }
        before = {
            "format version": old.get("format_version"),
            "layout": old.get("layout"),
            "seed": old.get("seed"),
            "test fraction": old.get("test_fraction"),
            "validation fraction": old.get("val_fraction"),
            "max side": old_resize.get("max_side"),
            "JPEG quality": old.get("jpeg_quality"),
            "JPEG quality of resized images": old_resize.get("jpeg_quality"),
            "EXIF orientation applied": bool(old.get("exif_orientation_applied")),
            "max pixels": old.get("max_pixels"),
            "classes": old.get("classes"),
        }
    except (OSError, ValueError, AttributeError):
        return []

    def shown(value):
        if isinstance(value, list):
            return ", ".join(map(str, value[:5])) + (" ..." if len(value) > 5 else "")
        return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)

    if before["max side"] != now["max side"]:  # resizing switched on or off: its quality follows
        del now["JPEG quality of resized images"]
    return [f"{name} {shown(before[name])}, now {shown(value)}" for name, value in now.items() if before[name] != value]


def remove_leftovers(out, keep):
    """Delete our own files that the new plan does not use (never anyone else's)."""
    for name in os.listdir(out):
        stale_shard = parse_shard_name(name) is not None and name not in keep
        if stale_shard or name.startswith(INCOMPLETE_PREFIX):
            os.remove(os.path.join(out, name))


def remove_unfinished(out):
    """Remove the temporary files of shards being written (stopped workers cannot; we hold the lock)."""
    for name in os.listdir(out):
        if name.startswith(INCOMPLETE_PREFIX):
            with contextlib.suppress(OSError):
                os.remove(os.path.join(out, name))


def drop_finished_sidecar(out, kept):
    """Before a changed plan touches any shard: record the shards kept in the progress file, drop the sidecar.

    The old sidecar would otherwise describe shards that no longer exist.
    """
    for record in kept.values():
        append_progress(out, record)
    os.remove(os.path.join(out, SIDECAR_NAME))
