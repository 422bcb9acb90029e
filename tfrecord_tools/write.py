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
import os
import random
import time

from . import __version__, _pool
from .encode import DEFAULT_MAX_PIXELS, REENCODE_JPEG_QUALITY, ImageCheckError, stored_jpeg_bytes
from .errors import ImageWriteError, OutputFolderError, SourceChangedError, SourceFolderError
from .record_io import frame_record, serialize_example
from .scan import scan_images
from .sidecar import (
    FEATURES,
    FORMAT_VERSION,
    INCOMPLETE_PREFIX,
    OS_METADATA_NAMES,
    PROGRESS_NAME,
    REJECTED_NAME,
    SHARD_NAME_PATTERN,
    SIDECAR_NAME,
    incomplete_path,
    is_our_file,
    shard_file_name,
    write_json_atomic,
)

#: Default shard size: the tf.data guide suggests files of 100 MB or more.
DEFAULT_TARGET_SHARD_BYTES = 100 * 1024 * 1024
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


def split_images(scan, test_fraction=0.2, seed=0):
    """Assign every good image to a split.

    Parameters
    ----------
    scan : ScanResult
    test_fraction : float
        Share of each class that goes to ``test`` (rounded half up, and at least
        one image stays in ``train``). Ignored when SRC is already split.
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
    train, test = [], []
    for class_name in scan.class_names:
        images = sorted(by_class.get(class_name, []), key=lambda image: image.relative_path)
        # A string seed is hashed with SHA-512 by random.Random: stable across runs and platforms.
        _seeded_random(f"{seed}/split/{class_name}").shuffle(images)
        test_count = min(math.floor(len(images) * test_fraction + 0.5), max(len(images) - 1, 0))
        test.extend(images[:test_count])
        train.extend(images[test_count:])
    return {"train": train, "test": test} if test else {"train": train}


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


def plan_shards(splits, num_shards=None, target_shard_bytes=DEFAULT_TARGET_SHARD_BYTES, seed=0):
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
            digest_input = json.dumps(
                [FORMAT_VERSION, REENCODE_JPEG_QUALITY, name,
                 [[image.relative_path, image.sha256, image.label, image.class_name, image.reencode]
                  for image in members]],
                ensure_ascii=True,
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
        ``out``, ``file``, ``plan_sha256``, ``max_pixels`` and ``entries``: tuples
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
                encoded = _stored_bytes(path, data, reencode, job["max_pixels"])
                record = frame_record(serialize_example(_example_features(entry, encoded)))
                handle.write(record)
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
            handle.flush()
            os.fsync(handle.fileno())  # the rename below must never expose unsynced data
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


def _stored_bytes(path, data, reencode, max_pixels):
    """The bytes to store for one source file; any failure names the file."""
    if not reencode:
        return data
    try:
        return stored_jpeg_bytes(data, max_pixels)
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


def _read_progress(out):
    finished = {}
    try:
        with open(os.path.join(out, PROGRESS_NAME), encoding="ascii") as handle:
            for line in handle:
                try:
                    result = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a crash
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
    """Create OUT (if new) after checking it is a folder apart from SRC."""
    if os.path.commonpath([out, source]) == source:
        raise OutputFolderError(f"output folder {out} is inside the source folder {source}; choose another")
    if os.path.commonpath([out, source]) == out:
        raise OutputFolderError(f"output folder {out} contains the source folder {source}; choose another")
    if os.path.exists(out) and not os.path.isdir(out):
        raise OutputFolderError(f"output {out} is a file; expected a folder (new or written by this tool)")
    os.makedirs(out, exist_ok=True)


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

    Returns ``(earlier, has_sidecar)``: the finished shards an earlier run left
    (from its sidecar or its progress file), keyed by file name, and whether a
    finished dataset is there.
    """
    names = sorted(os.listdir(out))
    # A file browser's .DS_Store or Thumbs.db is neither ours nor in the way: left alone.
    foreign = [name for name in names if not is_our_file(name) and name not in OS_METADATA_NAMES]
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise OutputFolderError(
            f"output folder {out} already holds files that tfrecord_tools did not write ({shown}); "
            "choose an empty or new folder. Nothing was changed."
        )
    has_sidecar = SIDECAR_NAME in names
    has_progress = PROGRESS_NAME in names
    shards_without_record = [name for name in names if SHARD_NAME_PATTERN.match(name)]
    if shards_without_record and not (has_sidecar or has_progress):
        raise OutputFolderError(
            f"output folder {out} holds shard files ({shards_without_record[0]}, ...) but no {SIDECAR_NAME}: "
            "they may come from another tool. Choose an empty or new folder. Nothing was changed."
        )
    earlier = {}
    if has_sidecar:
        try:
            with open(os.path.join(out, SIDECAR_NAME), encoding="utf-8") as handle:
                sidecar = json.load(handle)
            for split in sidecar["splits"].values():
                for shard in split["shards"]:
                    earlier[shard["file"]] = shard
        except (OSError, ValueError, KeyError, TypeError):
            earlier = {}
    earlier.update(_read_progress(out))
    return earlier, has_sidecar


def _remove_leftovers(out, keep):
    """Delete our own files that the new plan does not use (never anyone else's)."""
    for name in os.listdir(out):
        stale_shard = SHARD_NAME_PATTERN.match(name) and name not in keep
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
            by_hash[image.sha256].append((split, image.relative_path))
    across, within_groups = [], 0
    for sha256, members in sorted(by_hash.items()):
        if len(members) < 2:
            continue
        if len({split for split, _ in members}) > 1:
            across.append({"sha256": sha256, "files": sorted(f"{split}:{path}" for split, path in members)})
        else:
            within_groups += 1
    across.sort(key=lambda group: group["files"])
    return {
        "across_splits_count": len(across),
        "across_splits": across[:100],  # the first 100 groups; the count says how many there are
        "within_split_groups": within_groups,
    }


def build_sidecar(scan, splits, plans, shard_results, seed, test_fraction, max_pixels):
    """The content of ``dataset.json`` (no timings, so it too is reproducible)."""
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
    return {
        "tool": "tfrecord_tools",
        "tool_version": __version__,
        "format_version": FORMAT_VERSION,
        "source": scan.source,
        "layout": scan.layout,
        "seed": seed,
        "test_fraction": test_fraction if scan.layout == "classes" else None,
        "jpeg_quality": REENCODE_JPEG_QUALITY,
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
        },
        "empty_classes": [name for name, count in scan.class_counts().items() if count == 0],
        "reencoded_by_source": dict(sorted(reencoded.items())),
        "rejected_by_category": dict(sorted(rejected.items())),
        "rejected_file": REJECTED_NAME,
        "duplicates": _duplicates(splits),
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


def write_dataset(src, out, *, test_fraction=0.2, seed=0, num_shards=None, target_shard_bytes=None,
                  workers=None, on_error="skip", max_pixels=DEFAULT_MAX_PIXELS, overwrite=False,
                  progress=False):
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
    test_fraction : float
        Share of each class held out as ``test`` (0 for none); ignored when SRC
        is already split into ``train/``, ``validation/`` (or ``val/``,
        ``valid/``), ``test/``.
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
        Changes the speed only, never the output.
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
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    if num_shards is not None and num_shards < 1:
        raise ValueError(f"num_shards must be at least 1, got {num_shards}")
    target_shard_bytes = DEFAULT_TARGET_SHARD_BYTES if target_shard_bytes is None else int(target_shard_bytes)
    if target_shard_bytes < 1:
        raise ValueError(f"target_shard_bytes must be positive, got {target_shard_bytes}")
    workers = _pool.default_workers() if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    source = os.path.realpath(os.fspath(src))
    out = os.path.realpath(os.fspath(out))
    if not os.path.isdir(source):
        raise SourceFolderError(f"source folder {source} does not exist or is not a folder")
    _create_output_folder(out, source)
    with _exclusive_use(out):
        earlier, had_sidecar = _inspect_output_folder(out)

        counter = multiprocessing.get_context("spawn").Value("q", 0)
        pool = _pool.start_pool(workers, _worker_init, (counter,)) if workers > 1 else None
        try:
            pool_started = time.perf_counter()
            scan = scan_images(source, workers=workers, on_error=on_error, max_pixels=max_pixels,
                               progress=progress, _pool_to_use=pool, _then=_AFTER_WORKER_DIED)
            if not scan.images:
                reasons = collections.Counter(item.category for item in scan.rejected)
                raise SourceFolderError(
                    f"no usable image under {source} ({len(scan.rejected)} file(s) rejected: "
                    f"{dict(reasons) or 'none found'})"
                )
            scanned = time.perf_counter()
            splits = split_images(scan, test_fraction, seed)
            plans = plan_shards(splits, num_shards, target_shard_bytes, seed)
            reusable = {plan["file"]: earlier[plan["file"]] for plan in plans
                        if _still_valid(out, earlier.get(plan["file"]), plan)}
            if had_sidecar and len(reusable) < len(plans) and not overwrite:
                raise OutputFolderError(
                    f"output folder {out} holds a finished dataset made from other inputs or settings; "
                    "pass overwrite=True (--overwrite) to replace it, or choose another folder. Nothing was changed."
                )
            if had_sidecar and len(reusable) < len(plans):
                # The old sidecar is about to describe shards that no longer exist: record
                # the shards we keep in the progress file, then drop the sidecar.
                for record in reusable.values():
                    _append_progress(out, record)
                os.remove(os.path.join(out, SIDECAR_NAME))
            _remove_leftovers(out, keep={plan["file"] for plan in plans})
            jobs = [
                {
                    "out": out,
                    "file": plan["file"],
                    "plan_sha256": plan["plan_sha256"],
                    "max_pixels": max_pixels,
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
            written = _run_jobs(jobs, pool, counter, progress, sum(len(job["entries"]) for job in jobs), out)
            shards_done = time.perf_counter()
        finally:
            if pool is not None:
                pool.terminate()
        shard_results = dict(reusable)
        shard_results.update((result["file"], result) for result in written)
        sidecar = build_sidecar(scan, splits, plans, shard_results, seed, test_fraction, max_pixels)
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
    """One line: images, rejected, MB, seconds, images per second."""
    totals = summary["totals"]
    line = (
        f"{totals['images']:,} images in {totals['shards']} shards "
        f"({summary['shards_reused']} reused), {totals['rejected']:,} rejected, "
        f"{totals['bytes'] / 1e6:.1f} MB, {summary['seconds']:.1f} s, "
        f"{summary['images_per_second']:,.0f} images/s -> {summary['out']}"
    )
    duplicates = summary["duplicates"]["across_splits_count"]
    if duplicates:
        line += f"\nwarning: {duplicates} image(s) appear in more than one split (same SHA-256); see dataset.json"
    if summary["empty_classes"]:
        line += f"\nwarning: classes without usable images (labels kept): {', '.join(summary['empty_classes'])}"
    return line


