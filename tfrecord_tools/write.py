"""Write a checked image folder as sharded TFRecords with a sidecar, resumably: the orchestration.

:func:`write_dataset` runs four steps under a lock on OUT (:mod:`tfrecord_tools.out_folder`),
so a second write into the same folder stops at once with a message instead of
mixing its shards with the first's:

1. **Check** every file (:mod:`tfrecord_tools.scan`): sniff, decode, hash.
2. **Plan** (:mod:`tfrecord_tools.plan`): the split, which image goes to which
   shard, and a digest of each shard's plan; never dependent on the number of
   workers, so the same inputs and settings give byte-identical shards.
3. **Write** the shards in parallel worker processes that do not import
   TensorFlow. Each shard is written to a hidden temporary name, synced, and
   renamed to its final name only when complete; then a line naming it and its
   plan digest is appended to a progress file. A re-run keeps every final shard
   whose plan digest and SHA-256 still match.
4. **Describe** (:mod:`tfrecord_tools.sidecar`): ``rejected.jsonl`` and
   ``dataset.json`` (label map, feature spec, counts per split, shard and class,
   bytes, SHA-256 of each shard, duplicates).

If a worker process dies (the out-of-memory killer, say), the write stops with
a :class:`~tfrecord_tools.errors.WorkerDiedError`; the shards finished so far are
kept for the re-run.
"""

import collections
import dataclasses
import hashlib
import multiprocessing
import numbers
import os
import time

from . import _pool, out_folder, plan
from .encode import (
    DEFAULT_MAX_PIXELS,
    MAX_JPEG_SIDE,
    REENCODE_JPEG_QUALITY,
    RESIZE_JPEG_QUALITY,
    ImageCheckError,
    stored_jpeg_bytes,
)
from .errors import ImageWriteError, OptionError, SourceChangedError, SourceFolderError, option_name, printable
from .find import own_folders
from .progress import progress_bar
from .record_io import frame_record, serialize_example
from .scan import scan_in_pool
from .sidecar import INCOMPLETE_PREFIX, REJECTED_NAME, SIDECAR_NAME, build_sidecar, write_json_atomic, write_rejected

#: The longest side --max-side accepts (JPEG cannot store more than 65,535 pixels a side).
MAX_SIDE_LIMIT = MAX_JPEG_SIDE
#: What to do after a worker died while writing.
_AFTER_WORKER_DIED = ("complete shards are kept: run the same command again to finish (with fewer --workers "
                      "if memory is short)")


@dataclasses.dataclass(frozen=True)
class WriteOptions:
    """Every setting of one write, checked (see :func:`write_dataset` for each).

    Make it with :meth:`checked`, which applies the defaults and refuses values
    that cannot work; the write passes this one object along.
    """

    test_fraction: float
    val_fraction: float
    #: True when a test or validation fraction was asked for (reported if SRC is split already).
    fractions_given: bool
    seed: int
    num_shards: int | None
    target_shard_bytes: int
    workers: int
    on_error: str
    max_pixels: int
    overwrite: bool
    progress: bool
    max_side: int | None
    #: None: 90 for resized images, 95 for the other re-encodings.
    jpeg_quality: int | None
    apply_orientation: bool

    @classmethod
    def checked(cls, *, test_fraction=None, seed=0, num_shards=None, target_shard_bytes=None, workers=None,
                on_error="skip", max_pixels=DEFAULT_MAX_PIXELS, overwrite=False, progress=False,
                val_fraction=None, max_side=None, jpeg_quality=None, apply_orientation=False):
        """The options of :func:`write_dataset`'s keyword arguments, defaults applied; raises OptionError."""
        fractions_given = bool(test_fraction) or bool(val_fraction)
        test_fraction = 0.2 if test_fraction is None else test_fraction
        val_fraction = 0.0 if val_fraction is None else val_fraction
        target_shard_bytes = plan.DEFAULT_TARGET_SHARD_BYTES if target_shard_bytes is None else target_shard_bytes
        _check_options(test_fraction, val_fraction, seed, num_shards, target_shard_bytes, on_error, max_pixels,
                       max_side, jpeg_quality)
        # Plain Python numbers from here on (a NumPy integer would not go into the JSON plan digests).
        return cls(
            test_fraction=float(test_fraction), val_fraction=float(val_fraction), fractions_given=fractions_given,
            seed=int(seed), num_shards=None if num_shards is None else int(num_shards),
            target_shard_bytes=int(target_shard_bytes), workers=_pool.usable_workers(workers), on_error=on_error,
            max_pixels=int(max_pixels), overwrite=bool(overwrite), progress=bool(progress),
            max_side=None if max_side is None else int(max_side),
            jpeg_quality=None if jpeg_quality is None else int(jpeg_quality),
            apply_orientation=bool(apply_orientation),
        )

    @property
    def resize_quality(self):
        """JPEG quality of the images ``max_side`` resizes."""
        return RESIZE_JPEG_QUALITY if self.jpeg_quality is None else self.jpeg_quality

    @property
    def reencode_quality(self):
        """JPEG quality of the other re-encodings (PNG, GIF, ..., photos turned upright)."""
        return REENCODE_JPEG_QUALITY if self.jpeg_quality is None else self.jpeg_quality

    @property
    def stored_as(self):
        """The settings in use that change the stored bytes: part of every shard's plan digest.

        Only those in use, so that folders written without them stay reusable.
        """
        stored_as = {}
        if self.max_side is not None:
            stored_as.update(max_side=self.max_side, jpeg_quality=self.resize_quality)
        if self.jpeg_quality is not None:
            stored_as["reencode_jpeg_quality"] = self.jpeg_quality
        if self.apply_orientation:
            stored_as["apply_orientation"] = True
        return stored_as

    @property
    def store(self):
        """Keyword arguments of :func:`~tfrecord_tools.encode.stored_jpeg_bytes`."""
        return {"max_side": self.max_side, "jpeg_quality": self.resize_quality,
                "reencode_quality": self.reencode_quality, "apply_orientation": self.apply_orientation}


def _check_options(test_fraction, val_fraction, seed, num_shards, target_shard_bytes, on_error, max_pixels,
                   max_side, jpeg_quality):
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
    if not whole(seed):
        raise OptionError(f"{name('seed')} must be a whole number, got {seed!r}")
    if num_shards is not None and (not whole(num_shards) or num_shards < 1):
        raise OptionError(f"{name('num_shards')} must be a whole number of at least 1, got {num_shards!r}")
    if not whole(target_shard_bytes) or target_shard_bytes < 1:
        raise OptionError(f"{option_name('--shard-size', 'target_shard_bytes')} must be a positive whole number, "
                          f"got {target_shard_bytes!r}")
    if on_error not in ("skip", "stop"):
        raise OptionError(f"{name('on_error')} must be 'skip' or 'stop', got {on_error!r}")
    if not whole(max_pixels) or max_pixels < 1:
        raise OptionError(f"{name('max_pixels')} must be a whole number of at least 1, got {max_pixels!r}")
    if max_side is not None and (not whole(max_side) or not 1 <= max_side <= MAX_SIDE_LIMIT):
        raise OptionError(f"{name('max_side')} must be a whole number of pixels in [1, {MAX_SIDE_LIMIT}] (the "
                          f"largest JPEG side), got {max_side!r}")
    if jpeg_quality is not None and (not whole(jpeg_quality) or not 1 <= jpeg_quality <= 95):
        raise OptionError(f"{name('jpeg_quality')} must be a whole number in [1, 95], got {jpeg_quality!r}")


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
        ``jpeg_quality``, ``reencode_quality``, ``apply_orientation``) and
        ``entries``: tuples ``(path, relative_path, class_name, label, sha256,
        source_format, reencode, height, width, channels)`` in record order.
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
    OSError
        Writing the shard failed (a full disk, say); its ``filename`` is the shard's.
    """
    out, name = job["out"], job["file"]
    final_path = os.path.join(out, name)
    temporary_path = os.path.join(out, f"{INCOMPLETE_PREFIX}{name}.{os.getpid()}")
    file_hash = hashlib.sha256()
    class_counts = collections.Counter()
    written_bytes = 0
    pending = 0
    try:
        try:
            with open(temporary_path, "wb") as handle:
                for entry in job["entries"]:
                    record = frame_record(serialize_example(_example_features(entry, _source_bytes(entry, job))))
                    handle.write(record)
                    file_hash.update(record)
                    written_bytes += len(record)
                    class_counts[entry[2]] += 1
                    pending += 1
                    if pending == 64:
                        if on_record is not None:
                            on_record(pending)
                        pending = 0
                handle.flush()
                os.fsync(handle.fileno())  # the rename below must never expose unsynced data
        except OSError as error:
            # A full disk raises in write(), and again when the file is closed (the buffered rest is
            # flushed): whichever reaches here, the message names the shard, not a bare errno.
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
    out_folder.append_progress(out, result)
    return result


def _source_bytes(entry, job):
    """The bytes to store for one entry: read again, compared with the checked hash, maybe re-encoded."""
    path, _, _, _, sha256, _, reencode = entry[:7]
    try:
        with open(path, "rb") as source:
            data = source.read()
    except OSError as error:
        raise SourceChangedError(
            f"{path} cannot be read any more ({error.strerror or error}), though it was when checked; "
            "run the write again"
        ) from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise SourceChangedError(f"{path} changed after it was checked (SHA-256 differs); run the write again")
    return _stored_bytes(path, data, reencode, job["max_pixels"], job.get("store") or {})


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
            f"{path}: re-encoding to JPEG failed: {str(error) or type(error).__name__}; remove or convert the file, "
            "then run the write again"
        ) from None


def _count_in_shared_counter(count):
    with _progress_counter.get_lock():
        _progress_counter.value += count


def _write_shard_in_worker(job):
    return write_shard(job, on_record=_count_in_shared_counter if _progress_counter is not None else None)


# ---------------------------------------------------------------------------
# The whole job


def _run_jobs(jobs, pool, counter, progress, total_images, out):
    bar = progress_bar(total_images, "writing") if progress else None
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
        Show progress on stderr: bars on a terminal, else one line per stage (checking, writing).
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
    options = WriteOptions.checked(
        test_fraction=test_fraction, seed=seed, num_shards=num_shards, target_shard_bytes=target_shard_bytes,
        workers=_pool.usable_workers(workers),  # here, so that its warning points at the caller
        on_error=on_error, max_pixels=max_pixels, overwrite=overwrite, progress=progress,
        val_fraction=val_fraction, max_side=max_side, jpeg_quality=jpeg_quality, apply_orientation=apply_orientation)
    source = os.path.realpath(os.fspath(src))
    out = os.path.realpath(os.fspath(out))
    if not os.path.isdir(source):
        raise SourceFolderError(f"source folder {source} does not exist or is not a folder")
    created = out_folder.create(out, source, own_folders(source))
    try:
        return _write_locked(source, out, options, started)
    except BaseException:
        if created:
            out_folder.remove_if_empty(out)
        raise


def _write_locked(source, out, options, started):
    with out_folder.exclusive_use(out):
        earlier, finished_shards = out_folder.inspect(out)
        counter = multiprocessing.get_context("spawn").Value("q", 0)
        pool = _pool.start_pool(options.workers, _worker_init, (counter,)) if options.workers > 1 else None
        try:
            pool_started = time.perf_counter()
            scan = scan_in_pool(source, pool, then=_AFTER_WORKER_DIED, exclude=[out], workers=options.workers,
                                on_error=options.on_error, max_pixels=options.max_pixels, progress=options.progress,
                                max_side=options.max_side, apply_orientation=options.apply_orientation)
            if not scan.images:
                _refuse_without_images(source, out, scan)
            scanned = time.perf_counter()
            splits = plan.split_images(scan, options.test_fraction, options.seed, options.val_fraction)
            warnings = list(scan.warnings) + plan.split_warnings(scan, splits, options.test_fraction,
                                                                 options.val_fraction, options.fractions_given)
            plans = plan.plan_shards(splits, options.num_shards, options.target_shard_bytes, options.seed,
                                     options.stored_as)
            reuse = out_folder.plan_reuse(
                out, plans, earlier, finished_shards, overwrite=options.overwrite,
                differences=lambda: out_folder.setting_differences(out, scan.layout, scan.class_names, options))
            out_folder.start_progress(out)
            if reuse.replaces_finished:
                out_folder.drop_finished_sidecar(out, reuse.shards)
            out_folder.remove_leftovers(out, keep={shard["file"] for shard in plans})
            jobs = [_shard_job(out, shard, options) for shard in plans if shard["file"] not in reuse.shards]
            # Biggest shards first, so no worker is left alone with a big one at the end.
            jobs.sort(key=lambda job: -len(job["entries"]))
            planned = time.perf_counter()
            written = _run_jobs(jobs, pool, counter, options.progress, sum(len(job["entries"]) for job in jobs),
                                out)
            shards_done = time.perf_counter()
        except BaseException:
            if pool is not None:
                pool.terminate()
                pool = None
            out_folder.remove_unfinished(out)
            raise
        finally:
            if pool is not None:
                pool.terminate()
        shard_results = dict(reuse.shards)
        shard_results.update((result["file"], result) for result in written)
        sidecar = build_sidecar(scan, splits, plans, shard_results, options, warnings)
        write_rejected(out, scan.rejected)
        write_json_atomic(os.path.join(out, SIDECAR_NAME), sidecar)
        out_folder.finish_progress(out)
        finished = time.perf_counter()
        seconds = finished - started
        return {
            **sidecar,
            "out": out,
            "seconds": seconds,
            "images_per_second": sidecar["totals"]["images"] / seconds if seconds > 0 else float("inf"),
            "shards_written": len(written),
            "shards_reused": len(reuse.shards),
            "shards_repaired": reuse.repaired,
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


def _refuse_without_images(source, out, scan):
    """No image passed the check: list what was rejected, then say so."""
    reasons = collections.Counter(item.category for item in scan.rejected)
    listed = ""
    if scan.rejected:
        write_rejected(out, scan.rejected)
        listed = f"; each is listed with its reason in {os.path.join(out, REJECTED_NAME)}"
    raise SourceFolderError(
        f"no usable image under {source} ({len(scan.rejected)} file(s) rejected: "
        f"{dict(reasons) or 'none found'}){listed}"
    )


def _shard_job(out, shard, options):
    """What a worker needs to write one planned shard (plain values: it is pickled)."""
    return {
        "out": out,
        "file": shard["file"],
        "plan_sha256": shard["plan_sha256"],
        "max_pixels": options.max_pixels,
        "store": options.store,
        "entries": [
            (image.path, image.relative_path, image.class_name, image.label, image.sha256, image.source_format,
             image.reencode, image.height, image.width, image.channels)
            for image in shard["images"]
        ],
    }


def format_summary(summary):
    """One line (images, rejected, MB, seconds, images per second), then a line per warning.

    Names from the file system go through :func:`~tfrecord_tools.errors.printable`.
    """
    totals = summary["totals"]
    line = (
        f"{totals['images']:,} images in {totals['shards']} shards "
        f"({summary['shards_reused']} reused), {totals['rejected']:,} rejected, "
        f"{totals['bytes'] / 1e6:.1f} MB, {summary['seconds']:.1f} s, "
        f"{summary['images_per_second']:,.0f} images/s -> {printable(summary['out'])}"
    )
    resize = summary.get("resize")
    if resize:
        line += (f"\n{resize['resized_images']:,} image(s) resized to at most {resize['max_side']} px a side "
                 f"(JPEG quality {resize['jpeg_quality']})")
    duplicates = summary["duplicates"]
    if duplicates["across_splits_count"]:
        files = ", ".join(map(printable, duplicates["across_splits"][0]["files"][:3]))
        line += (f"\nwarning: {duplicates['across_splits_count']} image(s) appear in more than one split "
                 f"(same SHA-256), e.g. {files}; see dataset.json")
    if duplicates.get("conflicting_labels_count"):
        files = ", ".join(map(printable, duplicates["conflicting_labels"][0]["files"][:4]))
        line += (f"\nwarning: {duplicates['conflicting_labels_count']} image(s) are stored under two or more "
                 f"classes (same SHA-256): {files}; see 'conflicting_labels' in dataset.json")
    if totals.get("multi_frame"):
        line += (f"\nwarning: {totals['multi_frame']} file(s) hold several frames or pages (animated GIF, WebP or "
                 f"PNG, multi-page TIFF); only the first is stored, e.g. {printable(summary['multi_frame_files'][0])}")
    if summary["empty_classes"]:
        line += ("\nwarning: classes without usable images (labels kept): "
                 f"{', '.join(map(printable, summary['empty_classes']))}")
    for warning in summary.get("warnings", []):
        line += f"\nwarning: {printable(warning)}"
    repaired = summary.get("shards_repaired") or []
    if repaired:
        line += (f"\nnote: {len(repaired)} shard(s) of the finished dataset were damaged or missing and were "
                 f"written again from the source: {', '.join(repaired[:5])}{' ...' if len(repaired) > 5 else ''}")
    return line
