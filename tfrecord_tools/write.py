"""Write a checked image folder as sharded TFRecords with a sidecar, resumably.

:func:`write_dataset` runs four steps:

1. **Check** every file (:func:`tfrecord_tools.scan.scan_images`): sniff, decode, hash.
2. **Plan**: a stratified, seeded train/test split (unless SRC is split already);
   per split, classes dealt round-robin over the shards so every shard holds
   each class within one image of the others; each shard's order shuffled with
   a seed of its own. The plan depends only on the good files, the seed and the
   shard settings (``num_shards``, or ``target_shard_bytes`` with at least
   :data:`DEFAULT_MIN_SHARDS` shards per split), never on the number of workers
   or on timing, so the same inputs and settings give byte-identical shards,
   and a finished folder is reused whatever ``workers`` a re-run asks for.
3. **Write** the shards in parallel worker processes that do not import
   TensorFlow. Each shard is written to a hidden temporary name, synced, and
   renamed to its final name only when complete; then a line naming it and a
   digest of its plan is appended to a progress file. A re-run keeps every
   final shard whose plan digest and SHA-256 still match.
4. **Describe**: ``rejected.jsonl`` and ``dataset.json`` (label map, feature spec,
   counts per split, shard and class, bytes, SHA-256 of each shard, duplicates).

All four steps run under a lock on OUT, so a second write into the same folder
stops at once with a message instead of mixing its shards with the first's.
If a worker process dies (the out-of-memory killer, say), the write stops with
a :class:`~tfrecord_tools.errors.WorkerDiedError`; the shards finished so far are
kept for the re-run.
"""

import collections
import contextlib
import hashlib
import json
import math
import multiprocessing
import numbers
import os
import random
import time

from . import __version__, _pool
from .encode import (
    DEFAULT_MAX_PIXELS,
    REENCODE_JPEG_QUALITY,
    RESIZE_FILTER,
    RESIZE_JPEG_QUALITY,
    STRICT_JPEG,
    ImageCheckError,
    stored_jpeg_bytes,
)
from .errors import ImageWriteError, OptionError, OutputFolderError, SourceChangedError, SourceFolderError, option_name
from .record_io import frame_record, iter_file_records, parse_example_bytes, serialize_example
from .scan import scan_images
from .sidecar import (
    FEATURES,
    FORMAT_VERSION,
    INCOMPLETE_PREFIX,
    OS_METADATA_NAMES,
    PROGRESS_NAME,
    REJECTED_NAME,
    SIDECAR_NAME,
    incomplete_path,
    is_our_file,
    is_tfrecord_tools_sidecar,
    parse_shard_name,
    shard_file_name,
    write_json_atomic,
)

#: Default shard size: the tf.data guide suggests files of 100 MB or more.
DEFAULT_TARGET_SHARD_BYTES = 100 * 1024 * 1024
#: The longest side --max-side accepts (JPEG cannot store more than 65,535 pixels a side).
MAX_SIDE_LIMIT = 65_500
#: Shards per split at least (fewer only when a split has fewer images), so that small
#: sets are still written in parallel and read with parallel interleave. A constant,
#: not the worker count: the shards must not depend on the machine that wrote them.
DEFAULT_MIN_SHARDS = 4
#: Test hook: seconds to sleep after each record, so a test can kill a slow write.
TEST_RECORD_DELAY_ENV = "TFRECORD_TOOLS_TEST_RECORD_DELAY"


# ---------------------------------------------------------------------------
# Planning


def _seeded_random(text):
    """``random.Random`` seeded with a string that may hold a non-UTF-8 file name.

    ``Random(str)`` hashes ``str.encode()``, which fails on the surrogates that stand
    for undecodable bytes in a name; the same bytes with ``surrogateescape`` give
    the same generator for every valid name, so earlier outputs stay identical.
    """
    return random.Random(text.encode("utf-8", "surrogateescape"))


def _allocate(sizes, fraction, caps, seed, what):
    """How many images of each class go to a held-out split: ``fraction`` of the total, spread by class.

    Each class gets ``floor(n * fraction)`` (at most its cap), and the images still
    needed to reach ``round(total * fraction)`` go one each to the classes with the
    largest remainders (ties broken by a seeded order). Rounding each class on its
    own would give 33% instead of 20% for 10,000 classes of 3 images.
    """
    counts = {name: min(math.floor(size * fraction), caps[name]) for name, size in sizes.items()}
    target = math.floor(sum(sizes.values()) * fraction + 0.5)
    extra = target - sum(counts.values())
    if extra > 0:
        order = sorted(
            (name for name in sizes if counts[name] < caps[name]),
            key=lambda name: (-(sizes[name] * fraction - math.floor(sizes[name] * fraction)),
                              hashlib.sha256(f"{seed}/{what}/{name}".encode("utf-8", "surrogateescape")).digest()),
        )
        for name in order[:extra]:
            counts[name] += 1
    return counts


def split_images(scan, test_fraction=0.2, seed=0, val_fraction=0.0):
    """Assign every good image to a split.

    Parameters
    ----------
    scan : ScanResult
    test_fraction, val_fraction : float
        Shares of all images that go to ``test`` and ``validation``, spread over
        the classes in proportion to their sizes (see :func:`_allocate`); at least
        one image of each class stays in ``train``. Ignored when SRC is already split.
    seed : int

    Returns
    -------
    dict[str, list of ImageFile]
        Split name to images; each class's images in a seeded random order.
    """
    if scan.layout == "splits":
        splits = collections.defaultdict(list)
        for image in scan.images:
            splits[image.split].append(image)
        for split, images in splits.items():
            _stratified_shuffle(images, seed, split)
        return dict(sorted(splits.items()))
    by_class = collections.defaultdict(list)
    for image in scan.images:
        by_class[image.class_name].append(image)
    sizes = {name: len(by_class.get(name, [])) for name in scan.class_names}
    test_counts = _allocate(sizes, test_fraction, {name: max(size - 1, 0) for name, size in sizes.items()},
                            seed, "test")
    val_counts = _allocate(sizes, val_fraction,
                           {name: max(size - 1 - test_counts[name], 0) for name, size in sizes.items()},
                           seed, "validation")
    train, validation, test = [], [], []
    for class_name in scan.class_names:
        images = sorted(by_class.get(class_name, []), key=lambda image: image.relative_path)
        # A string seed is hashed with SHA-512 by random.Random: stable across runs and platforms.
        _seeded_random(f"{seed}/split/{class_name}").shuffle(images)
        test_count, val_count = test_counts[class_name], val_counts[class_name]
        test.extend(images[:test_count])
        validation.extend(images[test_count : test_count + val_count])
        train.extend(images[test_count + val_count :])
    splits = {"train": train}
    if test:
        splits["test"] = test
    if validation:
        splits["validation"] = validation
    return dict(sorted(splits.items()))


def split_warnings(scan, splits, test_fraction, val_fraction, explicit_fractions):
    """What a user should know about the split shares (list of messages)."""
    if scan.layout == "splits":
        messages = []
        if explicit_fractions:
            messages.append("SRC is split already (its top folders are splits): test and validation fractions "
                            "are ignored")
        if not splits.get("test"):
            messages.append("SRC is split already and has no test/ folder (or no usable image in it): the dataset "
                            "has no test split; add SRC/test/<class>/ for one")
        members = {split: {image.class_name for image in images} for split, images in splits.items() if images}
        for split, present in members.items():
            missing = [name for name in scan.class_names
                       if name not in present and any(name in other for other in members.values())]
            if missing:
                shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
                elsewhere = sorted({other for other, classes in members.items() if set(missing) & classes})
                messages.append(f"the {split} split has no image of {len(missing)} class(es) that "
                                f"{' and '.join(elsewhere)} {'has' if len(elsewhere) == 1 else 'have'}: {shown}")
        return messages
    messages = []
    total = sum(len(images) for images in splits.values())
    for split, fraction in (("test", test_fraction), ("validation", val_fraction)):
        if not fraction:
            continue
        members = collections.Counter(image.class_name for image in splits.get(split, []))
        without = [name for name, count in scan.class_counts().items() if count and not members[name]]
        if without:
            shown = ", ".join(without[:5]) + (f" and {len(without) - 5} more" if len(without) > 5 else "")
            messages.append(f"{len(without)} class(es) have no {split} image (too few images for a share of "
                            f"{fraction:g}): {shown}")
        share = sum(members.values()) / total if total else 0.0
        if abs(share - fraction) > 0.01 + 1 / max(total, 1):
            messages.append(f"the {split} split holds {share:.1%} of the images, not {fraction:.1%}: too many "
                            "classes are too small to give their share")
    return messages


def _stratified_shuffle(images, seed, split):
    """Sort by class, shuffle within each class, in place."""
    by_class = collections.defaultdict(list)
    for image in sorted(images, key=lambda image: image.relative_path):
        by_class[image.class_name].append(image)
    images.clear()
    for class_name in sorted(by_class):
        members = by_class[class_name]
        _seeded_random(f"{seed}/{split}/{class_name}").shuffle(members)
        images.extend(members)


def shard_count(images, num_shards, target_shard_bytes, min_shards=DEFAULT_MIN_SHARDS):
    """How many shards a split gets.

    ``num_shards`` wins when given. Otherwise enough shards that each is about
    ``target_shard_bytes``, and at least ``min_shards`` (see
    :data:`DEFAULT_MIN_SHARDS`). Never more shards than images.
    """
    if not images:
        return 0
    if num_shards is not None:
        count = num_shards
    else:
        total_bytes = sum(image.num_bytes for image in images)
        count = max(math.ceil(total_bytes / target_shard_bytes), min_shards)
    return max(1, min(count, len(images)))


def plan_shards(splits, num_shards=None, target_shard_bytes=DEFAULT_TARGET_SHARD_BYTES, seed=0, stored_as=None):
    """Decide which image goes to which shard, in which order.

    Parameters
    ----------
    splits : dict[str, list of ImageFile]
        From :func:`split_images`: grouped by class, shuffled within class.
    num_shards : int, optional
        Shards per split (capped at the split's image count).
    target_shard_bytes : int
        Used when ``num_shards`` is None (with at least :data:`DEFAULT_MIN_SHARDS`
        shards per split, or one per image when there are fewer).
    seed : int
    stored_as : dict, optional
        ``max_side``, ``jpeg_quality`` and ``apply_orientation`` when any is in use:
        part of every shard's digest.

    Returns
    -------
    list of dict
        One per shard: ``split``, ``file``, ``images`` (list of ImageFile, in
        record order) and ``plan_sha256`` (digest of everything that decides the
        shard's bytes, used to recognise a finished shard on a re-run).
    """
    plans = []
    for split, images in splits.items():
        count = shard_count(images, num_shards, target_shard_bytes)
        for index in range(count):
            # Dealing class-grouped images round-robin spreads every class evenly.
            members = list(images[index::count])
            name = shard_file_name(split, index, count)
            random.Random(f"{seed}/{name}").shuffle(members)
            # The re-encode decision is in too: shards written before a JPEG without its
            # end-of-image marker was re-encoded (it was stored as is) are not reused.
            # (Resize and orientation settings only when used: folders written without them stay reusable.)
            digest_input = json.dumps(
                [FORMAT_VERSION, REENCODE_JPEG_QUALITY, name,
                 [[image.relative_path, image.sha256, image.label, image.class_name, image.reencode]
                  for image in members]] + ([stored_as] if stored_as else []),
                ensure_ascii=True, sort_keys=True,
            )
            plans.append({
                "split": split,
                "file": name,
                "images": members,
                "plan_sha256": hashlib.sha256(digest_input.encode("ascii")).hexdigest(),
            })
    return plans


# ---------------------------------------------------------------------------
# Writing one shard (runs in a worker process, or in-process with workers=1)

_progress_counter = None  # a multiprocessing.Value shared with the parent, set per worker


def _worker_init(counter):
    global _progress_counter
    _progress_counter = counter


def _example_features(entry, encoded):
    (path, relative, class_name, label, sha256, source_format, reencode, height, width, channels) = entry
    return {
        "image/encoded": encoded,
        "image/format": b"jpeg",
        "image/height": height,
        "image/width": width,
        "image/channels": channels,
        "image/class/label": label,
        # surrogateescape keeps the original bytes of a name that is not valid UTF-8
        "image/class/text": class_name.encode("utf-8", "surrogateescape"),
        "image/filename": relative.encode("utf-8", "surrogateescape"),
        "image/sha256": sha256.encode("ascii"),
        "image/source_format": source_format.encode("ascii"),
        "image/reencoded": int(reencode),
    }


def write_shard(job, on_record=None):
    """Write one shard to a temporary name, then rename it into place.

    Parameters
    ----------
    job : dict
        ``out``, ``file``, ``plan_sha256``, ``max_pixels``, ``store`` (keyword
        arguments of :func:`~tfrecord_tools.encode.stored_jpeg_bytes`: ``max_side``,
        ``jpeg_quality``, ``apply_orientation``) and ``entries``: tuples
        ``(path, relative_path, class_name, label, sha256, source_format,
        reencode, height, width, channels)`` in record order.
    on_record : callable, optional
        Called with the number of records written since the last call.

    Returns
    -------
    dict
        ``file``, ``images``, ``bytes``, ``sha256`` (of the shard file),
        ``class_counts`` and ``plan_sha256``.

    Raises
    ------
    SourceChangedError
        A source file cannot be read any more, or its bytes no longer match the
        hash taken when it was checked.
    ImageWriteError
        A source file cannot be stored (re-encoding it failed); names the file.
    """
    out, name = job["out"], job["file"]
    final_path = os.path.join(out, name)
    temporary_path = os.path.join(out, f"{INCOMPLETE_PREFIX}{name}.{os.getpid()}")
    delay = float(os.environ.get(TEST_RECORD_DELAY_ENV, "0") or 0)
    file_hash = hashlib.sha256()
    class_counts = collections.Counter()
    written_bytes = 0
    pending = 0
    try:
        with open(temporary_path, "wb") as handle:
            for entry in job["entries"]:
                path, relative, class_name, _, sha256, _, reencode = entry[:7]
                try:
                    with open(path, "rb") as source:
                        data = source.read()
                except OSError as error:
                    raise SourceChangedError(
                        f"{path} cannot be read any more ({error.strerror or error}), though it was when checked; "
                        "run the write again"
                    ) from None
                if hashlib.sha256(data).hexdigest() != sha256:
                    raise SourceChangedError(
                        f"{path} changed after it was checked (SHA-256 differs); run the write again"
                    )
                encoded = _stored_bytes(path, data, reencode, job["max_pixels"], job.get("store") or {})
                record = frame_record(serialize_example(_example_features(entry, encoded)))
                _write_or_name_the_file(handle, record, final_path)
                file_hash.update(record)
                written_bytes += len(record)
                class_counts[class_name] += 1
                pending += 1
                if pending == 64:
                    if on_record is not None:
                        on_record(pending)
                    pending = 0
                if delay:
                    time.sleep(delay)
            try:
                handle.flush()
                os.fsync(handle.fileno())  # the rename below must never expose unsynced data
            except OSError as error:
                raise OSError(error.errno, error.strerror, final_path) from None
        os.replace(temporary_path, final_path)
    except BaseException:
        if os.path.exists(temporary_path):
            os.remove(temporary_path)
        raise
    if on_record is not None and pending:
        on_record(pending)
    result = {
        "file": name,
        "images": len(job["entries"]),
        "bytes": written_bytes,
        "sha256": file_hash.hexdigest(),
        "class_counts": dict(sorted(class_counts.items())),
        "plan_sha256": job["plan_sha256"],
    }
    _append_progress(out, result)
    return result


def _write_or_name_the_file(handle, data, final_path):
    """``handle.write(data)``; a full disk or another OSError names the shard being written."""
    try:
        handle.write(data)
    except OSError as error:
        raise OSError(error.errno, error.strerror, final_path) from None


def _stored_bytes(path, data, reencode, max_pixels, store):
    """The bytes to store for one source file; any failure names the file."""
    if not reencode:
        return data
    try:
        return stored_jpeg_bytes(data, max_pixels, **store)
    except ImageCheckError as error:
        raise ImageWriteError(f"{path}: cannot be stored: {error.reason}") from None
    except Exception as error:  # Pillow's encoders raise many types (OSError, ValueError, ...)
        raise ImageWriteError(
            f"{path}: re-encoding to JPEG failed: {error or type(error).__name__}; remove or convert the file, "
            "then run the write again"
        ) from None


def _count_in_shared_counter(count):
    with _progress_counter.get_lock():
        _progress_counter.value += count


def _write_shard_in_worker(job):
    return write_shard(job, on_record=_count_in_shared_counter if _progress_counter is not None else None)


def _append_progress(out, result):
    # One os.write of a short line with O_APPEND is atomic on local file systems,
    # so workers can append without a lock.
    line = (json.dumps(result, ensure_ascii=True) + "\n").encode("ascii")
    descriptor = os.open(os.path.join(out, PROGRESS_NAME), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, line)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _start_progress(out):
    """Create the progress file before the first shard is renamed into place.

    It is what tells a re-run after a crash that the shard files in OUT are ours,
    even when the crash (or a full disk) came before the first shard's line.
    """
    descriptor = os.open(os.path.join(out, PROGRESS_NAME), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, (json.dumps({"write_started": True, "tool_version": __version__}) + "\n").encode())
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _read_progress(out):
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


def _file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _still_valid(out, record, plan):
    """A shard from an earlier run may be kept if plan and bytes still match."""
    path = os.path.join(out, plan["file"])
    return (
        record is not None
        and record.get("plan_sha256") == plan["plan_sha256"]
        and os.path.isfile(path)
        and os.path.getsize(path) == record.get("bytes")
        and _file_sha256(path) == record.get("sha256")
    )


# ---------------------------------------------------------------------------
# The output folder


def _create_output_folder(out, source):
    """Create OUT (if new) after checking it is a folder apart from SRC that we can write into.

    Returns True when OUT was created here (a failed write then removes it again).
    """
    if os.path.commonpath([out, source]) == source:
        raise OutputFolderError(f"output folder {out} is inside the source folder {source}; choose another")
    if os.path.commonpath([out, source]) == out:
        raise OutputFolderError(f"output folder {out} contains the source folder {source}; choose another")
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
            _remove_if_empty(out)
        raise OutputFolderError(
            f"cannot write into the output folder {out}: {error.strerror or error}; choose a folder you can write "
            "to. Nothing was changed."
        ) from None
    return created


def _remove_if_empty(out):
    """After a failed write into a folder it created: leave no empty OUT behind."""
    try:
        if not [name for name in os.listdir(out) if not name.startswith(INCOMPLETE_PREFIX)]:
            for name in os.listdir(out):
                os.remove(os.path.join(out, name))
            os.rmdir(out)
    except OSError:
        pass


@contextlib.contextmanager
def _exclusive_use(out):
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


def _inspect_output_folder(out):
    """Check that OUT holds nothing but our own files.

    Returns ``(earlier, finished_shards)``: the finished shards an earlier run left
    (from its sidecar or its progress file), keyed by file name, and the names of
    the shards that the finished dataset's sidecar lists (None when there is no
    finished dataset).
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
            with open(os.path.join(out, SIDECAR_NAME), encoding="utf-8") as handle:
                sidecar = json.load(handle)
            for split in sidecar["splits"].values():
                for shard in split["shards"]:
                    earlier[shard["file"]] = shard
                    finished_shards.add(shard["file"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            earlier = {}
    earlier.update(_read_progress(out))
    return earlier, finished_shards


def _listed_shards(out):
    """Names of the shards that OUT's sidecar (when ours) and progress file list."""
    listed = set(_read_progress(out))
    path = os.path.join(out, SIDECAR_NAME)
    if os.path.exists(path) and is_tfrecord_tools_sidecar(path):
        try:
            with open(path, encoding="utf-8") as handle:
                sidecar = json.load(handle)
            listed.update(shard["file"] for split in sidecar["splits"].values() for shard in split["shards"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
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


def _setting_differences(out, scan, seed, max_pixels, test_fraction, val_fraction, stored_as):
    """What the finished dataset's sidecar records differently from this run's settings ("seed 0, now 1")."""
    try:
        with open(os.path.join(out, SIDECAR_NAME), encoding="utf-8") as handle:
            old = json.load(handle)
        old_resize = old.get("resize") or {}
        split_given = scan.layout == "classes"
        now = {
            "layout": scan.layout,
            "seed": seed,
            "test fraction": test_fraction if split_given else None,
            "validation fraction": val_fraction if split_given else None,
            "max side": stored_as.get("max_side"),
            "JPEG quality": stored_as.get("reencode_jpeg_quality", REENCODE_JPEG_QUALITY),
            "JPEG quality of resized images": stored_as.get("jpeg_quality") if "max_side" in stored_as else None,
            "EXIF orientation applied": bool(stored_as.get("apply_orientation")),
            "max pixels": max_pixels,
            "classes": scan.class_names,
        }
        before = {
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


def _remove_leftovers(out, keep):
    """Delete our own files that the new plan does not use (never anyone else's)."""
    for name in os.listdir(out):
        stale_shard = parse_shard_name(name) is not None and name not in keep
        if stale_shard or name.startswith(INCOMPLETE_PREFIX):
            os.remove(os.path.join(out, name))


# ---------------------------------------------------------------------------
# The sidecar


def _size_range(images):
    if not images:
        return None
    return {
        "min_height": min(image.height for image in images),
        "max_height": max(image.height for image in images),
        "min_width": min(image.width for image in images),
        "max_width": max(image.width for image in images),
    }


def _duplicates(splits):
    by_hash = collections.defaultdict(list)
    for split, images in splits.items():
        for image in images:
            by_hash[image.sha256].append((split, image.relative_path, image.class_name))
    across, conflicting, within_groups = [], [], 0
    for sha256, members in sorted(by_hash.items()):
        if len(members) < 2:
            continue
        files = sorted(f"{split}:{path}" for split, path, _ in members)
        if len({class_name for _, _, class_name in members}) > 1:
            conflicting.append({"sha256": sha256, "files": files})
        if len({split for split, _, _ in members}) > 1:
            across.append({"sha256": sha256, "files": files})
        else:
            within_groups += 1
    across.sort(key=lambda group: group["files"])
    conflicting.sort(key=lambda group: group["files"])
    return {
        "across_splits_count": len(across),
        "across_splits": across[:100],  # the first 100 groups; the count says how many there are
        "within_split_groups": within_groups,
        # The same bytes under two class names, in one split or across splits: one label is wrong.
        "conflicting_labels_count": len(conflicting),
        "conflicting_labels": conflicting[:100],
    }


def build_sidecar(scan, splits, plans, shard_results, seed, test_fraction, max_pixels, val_fraction=0.0,
                  stored_as=None, warnings=()):
    """The content of ``dataset.json`` (no timings and no absolute paths, so it too is reproducible)."""
    split_entries = {}
    for split, images in splits.items():
        shards = [shard_results[plan["file"]] for plan in plans if plan["split"] == split]
        class_counts = dict.fromkeys(scan.class_names, 0)
        for image in images:
            class_counts[image.class_name] += 1
        split_entries[split] = {
            "images": len(images),
            "bytes": sum(shard["bytes"] for shard in shards),
            "class_counts": class_counts,
            "image_size": _size_range(images),
            "shards": [
                {key: shard[key] for key in ("file", "images", "bytes", "sha256", "class_counts", "plan_sha256")}
                for shard in shards
            ],
        }
    reencoded = collections.Counter(
        f"{image.source_format}/{image.mode}" for image in scan.images if image.reencode
    )
    rejected = collections.Counter(item.category for item in scan.rejected)
    multi_frame = sorted(image.relative_path for image in scan.images if image.frames > 1)
    stored_as = stored_as or {}
    max_side = stored_as.get("max_side")
    return {
        "tool": "tfrecord_tools",
        "tool_version": __version__,
        "format_version": FORMAT_VERSION,
        "source": os.path.basename(scan.source.rstrip(os.sep)) or scan.source,
        "layout": scan.layout,
        "seed": seed,
        "test_fraction": test_fraction if scan.layout == "classes" else None,
        "val_fraction": val_fraction if scan.layout == "classes" else None,
        "jpeg_quality": stored_as.get("reencode_jpeg_quality", REENCODE_JPEG_QUALITY),
        "strict_jpeg_check": STRICT_JPEG,
        "resize": None if max_side is None else {
            "max_side": max_side,
            "filter": RESIZE_FILTER,
            "jpeg_quality": stored_as.get("jpeg_quality", RESIZE_JPEG_QUALITY),
            "resized_images": sum(image.resized for image in scan.images),
        },
        "exif_orientation_applied": bool(stored_as.get("apply_orientation")),
        "max_pixels": max_pixels,
        "classes": scan.class_names,
        "label_to_index": scan.label_to_index,
        "features": FEATURES,
        "splits": split_entries,
        "totals": {
            "images": sum(entry["images"] for entry in split_entries.values()),
            "bytes": sum(entry["bytes"] for entry in split_entries.values()),
            "shards": len(plans),
            "rejected": len(scan.rejected),
            "reencoded": sum(reencoded.values()),
            "multi_frame": len(multi_frame),
        },
        "empty_classes": [name for name, count in scan.class_counts().items() if count == 0],
        "reencoded_by_source": dict(sorted(reencoded.items())),
        "rejected_by_category": dict(sorted(rejected.items())),
        "rejected_file": REJECTED_NAME,
        # Animated GIF/WebP/PNG and multi-page TIFF: only the first frame or page is stored.
        "multi_frame_files": multi_frame[:100],
        "duplicates": _duplicates(splits),
        "warnings": list(warnings),
    }


def _write_rejected(out, rejected):
    temporary = incomplete_path(os.path.join(out, REJECTED_NAME))  # removed by the next write if we crash
    with open(temporary, "w", encoding="ascii") as handle:
        for item in rejected:
            handle.write(json.dumps(item.as_json(), ensure_ascii=True) + "\n")
    os.replace(temporary, os.path.join(out, REJECTED_NAME))


# ---------------------------------------------------------------------------
# The whole job

_AFTER_WORKER_DIED = ("complete shards are kept: run the same command again to finish (with fewer --workers "
                      "if memory is short)")


def _run_jobs(jobs, pool, counter, progress, total_images, out):
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total_images, desc="writing", unit="img", smoothing=0.1)
    results = []
    try:
        if pool is None:
            for job in jobs:
                results.append(write_shard(job, on_record=bar.update if bar is not None else None))
            return results
        shown = 0

        def show_progress():
            nonlocal shown
            if bar is not None:
                value = counter.value
                bar.update(value - shown)
                shown = value

        results.extend(pool.map(
            _write_shard_in_worker, jobs, ordered=False, on_wait=show_progress,
            doing=f"writing shards into {out}", then=_AFTER_WORKER_DIED,
        ))
        return results
    finally:
        if bar is not None:
            bar.close()


def _check_options(test_fraction, val_fraction, num_shards, target_shard_bytes, max_side, jpeg_quality):
    def whole(value):
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)

    def name(keyword):
        return option_name("--" + keyword.replace("_", "-"), keyword)

    for keyword, value in (("test_fraction", test_fraction), ("val_fraction", val_fraction)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value < 1.0:
            raise OptionError(f"{name(keyword)} must be a number in [0, 1), got {value!r}")
    if test_fraction + val_fraction >= 1.0:
        raise OptionError(f"{name('test_fraction')} + {name('val_fraction')} must be below 1 (training needs "
                          f"images), got {test_fraction} + {val_fraction}")
    if num_shards is not None and (not whole(num_shards) or num_shards < 1):
        raise OptionError(f"{name('num_shards')} must be a whole number of at least 1, got {num_shards!r}")
    if not whole(target_shard_bytes) or target_shard_bytes < 1:
        raise OptionError(f"{option_name('--shard-size', 'target_shard_bytes')} must be a positive whole number, "
                          f"got {target_shard_bytes!r}")
    if max_side is not None and (not whole(max_side) or not 1 <= max_side <= MAX_SIDE_LIMIT):
        raise OptionError(f"{name('max_side')} must be a whole number of pixels in [1, {MAX_SIDE_LIMIT}] (the "
                          f"largest JPEG side), got {max_side!r}")
    if jpeg_quality is not None and (not whole(jpeg_quality) or not 1 <= jpeg_quality <= 95):
        raise OptionError(f"{name('jpeg_quality')} must be a whole number in [1, 95], got {jpeg_quality!r}")


def write_dataset(src, out, *, test_fraction=None, seed=0, num_shards=None, target_shard_bytes=None,
                  workers=None, on_error="skip", max_pixels=DEFAULT_MAX_PIXELS, overwrite=False,
                  progress=False, val_fraction=None, max_side=None, jpeg_quality=None,
                  apply_orientation=False):
    """Convert ``SRC/<class>/...`` (or ``SRC/<split>/<class>/...``) to sharded TFRecords.

    Every image is decode-checked before it is written; run :func:`tfrecord_tools.verify`
    afterwards to re-read and check the shards themselves.

    Parameters
    ----------
    src : str or Path
        Source folder of class folders (or split folders of class folders).
    out : str or Path
        Output folder: new, empty, or written by an earlier (maybe interrupted)
        run of this function. A folder with other files is refused.
    test_fraction : float, optional
        Share of the images held out as ``test``, spread over the classes in
        proportion to their sizes (default 0.2; 0 for none). Ignored, with a
        warning when given, when SRC is already split into ``train/``,
        ``validation/`` (or ``val/``, ``valid/``...), ``test/`` (any case).
    seed : int
        Seeds the split, the spread over shards and the order inside each shard.
    num_shards : int, optional
        Shards per split. Default: about ``target_shard_bytes`` each, and at
        least :data:`DEFAULT_MIN_SHARDS` (4; fewer only when a split has fewer
        images). The shards never depend on ``workers``.
    target_shard_bytes : int, optional
        Default 100 MiB.
    workers : int, optional
        Processes that check and write; default all CPU cores; 1 runs in-process.
        Changes the speed only, never the output. More than one needs the
        calling script's top-level code under ``if __name__ == "__main__":``;
        called from outside such a block, the write warns and uses 1 process
        (run ``python -m tfrecord_tools write`` in a subprocess instead).
    on_error : {"skip", "stop"}
        Skip bad files and list them in ``rejected.jsonl``, or stop at the first
        bad image (hidden files and the like are skipped and listed either way).
    max_pixels : int
        Larger images are rejected before decoding.
    overwrite : bool
        Replace a finished dataset in OUT that was made with other inputs or
        settings (only our own files are ever removed).
    progress : bool
        Show progress bars on stderr.
    val_fraction : float, optional
        Share held out as ``validation`` (default 0), as ``test_fraction``.
    max_side : int, optional
        Store images whose longer side is over this many pixels resized to it
        (aspect ratio kept, Lanczos with ``reducing_gap=2.0``), as JPEG at
        ``jpeg_quality``; smaller images are stored as they are. Recorded in
        ``dataset.json`` under ``resize``.
    jpeg_quality : int, optional
        JPEG quality (1-95) of every re-encoded image: those ``max_side`` resizes
        and the others (PNG, GIF, ... and photos turned upright). Default: 90 for
        resized images, 95 for the others. Recorded in ``dataset.json``
        (``jpeg_quality``, and ``resize.jpeg_quality``).
    apply_orientation : bool
        Store images turned upright as their EXIF orientation tag says (they are
        re-encoded); by default the pixels are stored as the file holds them,
        which is what ``tf.io.decode_jpeg`` and Keras's loaders give.

    Returns
    -------
    dict
        The sidecar content plus ``out``, ``seconds``, ``images_per_second``,
        ``shards_written``, ``shards_reused`` and ``phase_seconds``.

    Raises
    ------
    SourceFolderError, OutputFolderError, BadImageError, SourceChangedError, ImageWriteError
        Each with a message that names the file and what was expected.
    WorkerDiedError
        A worker process died (killed for memory?); finished shards are kept.
    """
    started = time.perf_counter()
    explicit_fractions = bool(test_fraction) or bool(val_fraction)
    test_fraction = 0.2 if test_fraction is None else test_fraction
    val_fraction = 0.0 if val_fraction is None else val_fraction
    target_shard_bytes = DEFAULT_TARGET_SHARD_BYTES if target_shard_bytes is None else target_shard_bytes
    _check_options(test_fraction, val_fraction, num_shards, target_shard_bytes, max_side, jpeg_quality)
    # Plain Python numbers from here on (a NumPy integer would not go into the JSON plan digests).
    test_fraction, val_fraction = float(test_fraction), float(val_fraction)
    num_shards = None if num_shards is None else int(num_shards)
    max_side = None if max_side is None else int(max_side)
    target_shard_bytes = int(target_shard_bytes)
    jpeg_quality = None if jpeg_quality is None else int(jpeg_quality)
    workers = _pool.usable_workers(workers)
    source = os.path.realpath(os.fspath(src))
    out = os.path.realpath(os.fspath(out))
    if not os.path.isdir(source):
        raise SourceFolderError(f"source folder {source} does not exist or is not a folder")
    created = _create_output_folder(out, source)
    try:
        return _write_locked(source, out, started, locals_=dict(
            test_fraction=test_fraction, val_fraction=val_fraction, explicit_fractions=explicit_fractions,
            seed=seed, num_shards=num_shards, target_shard_bytes=target_shard_bytes, workers=workers,
            on_error=on_error, max_pixels=max_pixels, overwrite=overwrite, progress=progress, max_side=max_side,
            jpeg_quality=jpeg_quality, apply_orientation=apply_orientation))
    except BaseException:
        if created:
            _remove_if_empty(out)
        raise


def _write_locked(source, out, started, locals_):
    options = locals_
    workers, max_pixels, seed = options["workers"], options["max_pixels"], options["seed"]
    max_side = options["max_side"]
    quality = options["jpeg_quality"]  # None: 90 for resized images, 95 for other re-encodings
    resize_quality = RESIZE_JPEG_QUALITY if quality is None else quality
    stored_as = {}
    if max_side is not None:
        stored_as.update(max_side=max_side, jpeg_quality=resize_quality)
    if quality is not None:
        stored_as["reencode_jpeg_quality"] = quality
    if options["apply_orientation"]:
        stored_as["apply_orientation"] = True
    store = {"max_side": max_side, "jpeg_quality": resize_quality,
             "reencode_quality": REENCODE_JPEG_QUALITY if quality is None else quality,
             "apply_orientation": options["apply_orientation"]}
    with _exclusive_use(out):
        earlier, finished_shards = _inspect_output_folder(out)
        had_sidecar = finished_shards is not None

        counter = multiprocessing.get_context("spawn").Value("q", 0)
        pool = _pool.start_pool(workers, _worker_init, (counter,)) if workers > 1 else None
        try:
            pool_started = time.perf_counter()
            scan = scan_images(source, workers=workers, on_error=options["on_error"], max_pixels=max_pixels,
                               progress=options["progress"], max_side=max_side,
                               apply_orientation=options["apply_orientation"], _pool_to_use=pool,
                               _then=_AFTER_WORKER_DIED)
            if not scan.images:
                reasons = collections.Counter(item.category for item in scan.rejected)
                listed = ""
                if scan.rejected:
                    _write_rejected(out, scan.rejected)
                    listed = f"; each is listed with its reason in {os.path.join(out, REJECTED_NAME)}"
                raise SourceFolderError(
                    f"no usable image under {source} ({len(scan.rejected)} file(s) rejected: "
                    f"{dict(reasons) or 'none found'}){listed}"
                )
            scanned = time.perf_counter()
            splits = split_images(scan, options["test_fraction"], seed, options["val_fraction"])
            warnings = list(scan.warnings) + split_warnings(scan, splits, options["test_fraction"],
                                                            options["val_fraction"], options["explicit_fractions"])
            plans = plan_shards(splits, options["num_shards"], options["target_shard_bytes"], seed, stored_as)
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
            repaired = sorted(planned_files - set(reusable)) if same_plan else []
            if had_sidecar and changed and not same_plan and not options["overwrite"]:
                gone = sorted(finished_shards - planned_files)
                what = (f" (its shards {gone[0]}{' and more' if len(gone) > 1 else ''} are not in the new plan)"
                        if gone else "")
                differences = _setting_differences(out, scan, seed, max_pixels, options["test_fraction"],
                                                   options["val_fraction"], stored_as)
                made = (f"with other settings ({'; '.join(differences)})" if differences
                        else "from other inputs (the images under the source folder, or the shard size, differ)")
                raise OutputFolderError(
                    f"output folder {out} holds a finished dataset made {made}{what}; "
                    f"pass {option_name('--overwrite', 'overwrite=True')} to replace it, or choose another folder. "
                    "Nothing was changed."
                )
            _start_progress(out)
            if had_sidecar and changed:
                # The old sidecar is about to describe shards that no longer exist: record
                # the shards we keep in the progress file, then drop the sidecar.
                for record in reusable.values():
                    _append_progress(out, record)
                os.remove(os.path.join(out, SIDECAR_NAME))
            _remove_leftovers(out, keep=planned_files)
            jobs = [
                {
                    "out": out,
                    "file": plan["file"],
                    "plan_sha256": plan["plan_sha256"],
                    "max_pixels": max_pixels,
                    "store": store,
                    "entries": [
                        (image.path, image.relative_path, image.class_name, image.label, image.sha256,
                         image.source_format, image.reencode, image.height, image.width, image.channels)
                        for image in plan["images"]
                    ],
                }
                for plan in plans
                if plan["file"] not in reusable
            ]
            # Biggest shards first, so no worker is left alone with a big one at the end.
            jobs.sort(key=lambda job: -len(job["entries"]))
            planned = time.perf_counter()
            written = _run_jobs(jobs, pool, counter, options["progress"],
                                sum(len(job["entries"]) for job in jobs), out)
            shards_done = time.perf_counter()
        except BaseException:
            if pool is not None:
                pool.terminate()
                pool = None
            # Stopped workers cannot remove their unfinished shards: we hold the lock, so do it.
            for name in os.listdir(out):
                if name.startswith(INCOMPLETE_PREFIX):
                    with contextlib.suppress(OSError):
                        os.remove(os.path.join(out, name))
            raise
        finally:
            if pool is not None:
                pool.terminate()
        shard_results = dict(reusable)
        shard_results.update((result["file"], result) for result in written)
        sidecar = build_sidecar(scan, splits, plans, shard_results, seed, options["test_fraction"], max_pixels,
                                options["val_fraction"], stored_as, warnings)
        _write_rejected(out, scan.rejected)
        write_json_atomic(os.path.join(out, SIDECAR_NAME), sidecar)
        progress_path = os.path.join(out, PROGRESS_NAME)
        if os.path.exists(progress_path):
            os.remove(progress_path)
        finished = time.perf_counter()
        seconds = finished - started
        return {
            **sidecar,
            "out": out,
            "seconds": seconds,
            "images_per_second": sidecar["totals"]["images"] / seconds if seconds > 0 else float("inf"),
            "shards_written": len(written),
            "shards_reused": len(reusable),
            "shards_repaired": repaired,
            # Where the time went, in seconds: starting the workers, finding + sniffing +
            # decoding + hashing every file, splitting and planning (and hashing reused
            # shards), writing the shards, and the sidecar.
            "phase_seconds": {
                "start_workers": pool_started - started,
                "check": scanned - pool_started,
                "plan": planned - scanned,
                "write": shards_done - planned,
                "sidecar": finished - shards_done,
            },
        }


def format_summary(summary):
    """One line (images, rejected, MB, seconds, images per second), then a line per warning."""
    totals = summary["totals"]
    line = (
        f"{totals['images']:,} images in {totals['shards']} shards "
        f"({summary['shards_reused']} reused), {totals['rejected']:,} rejected, "
        f"{totals['bytes'] / 1e6:.1f} MB, {summary['seconds']:.1f} s, "
        f"{summary['images_per_second']:,.0f} images/s -> {summary['out']}"
    )
    resize = summary.get("resize")
    if resize:
        line += (f"\n{resize['resized_images']:,} image(s) resized to at most {resize['max_side']} px a side "
                 f"(JPEG quality {resize['jpeg_quality']})")
    duplicates = summary["duplicates"]
    if duplicates["across_splits_count"]:
        line += (f"\nwarning: {duplicates['across_splits_count']} image(s) appear in more than one split "
                 f"(same SHA-256), e.g. {', '.join(duplicates['across_splits'][0]['files'][:3])}; see dataset.json")
    if duplicates.get("conflicting_labels_count"):
        first = duplicates["conflicting_labels"][0]["files"]
        line += (f"\nwarning: {duplicates['conflicting_labels_count']} image(s) are stored under two or more "
                 f"classes (same SHA-256): {', '.join(first[:4])}; see 'conflicting_labels' in dataset.json")
    if totals.get("multi_frame"):
        line += (f"\nwarning: {totals['multi_frame']} file(s) hold several frames or pages (animated GIF, WebP or "
                 f"PNG, multi-page TIFF); only the first is stored, e.g. {summary['multi_frame_files'][0]}")
    if summary["empty_classes"]:
        line += f"\nwarning: classes without usable images (labels kept): {', '.join(summary['empty_classes'])}"
    for warning in summary.get("warnings", []):
        line += f"\nwarning: {warning}"
    repaired = summary.get("shards_repaired") or []
    if repaired:
        line += (f"\nnote: {len(repaired)} shard(s) of the finished dataset were damaged or missing and were "
                 f"written again from the source: {', '.join(repaired[:5])}{' ...' if len(repaired) > 5 else ''}")
    return line
