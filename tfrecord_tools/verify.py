"""Re-read every shard and check it against ``dataset.json``.

The sidecar itself must be whole (:func:`~tfrecord_tools.sidecar.read_sidecar`:
each shard listed once, under its own split, with a SHA-256 of 64 hex digits),
and every shard's plan digest must be 64 hex digits too (a re-run of ``write``
compares it). Then, for each shard listed in the sidecar, :func:`verify`

1. checks the file exists, its size, and its SHA-256;
2. walks every record and checks both TFRecord CRC-32C checksums;
3. parses every Example and checks that all features are present with one value;
4. decodes every image (strictly, as ``write`` checks it) and checks format, height, width and
   channels against the features, and that each JPEG ends with its
   end-of-image marker, without which ``tf.io.decode_jpeg`` fails (the rule
   ``write`` applies to decide which JPEGs it stores as they are);
5. checks the label against the class name and the label map, and, for images
   stored as their source bytes, the SHA-256 against ``image/sha256``;
6. compares counts per shard, class and split, and each split's recorded image
   sizes, with the sidecar (``load`` relies on both);

and then looks for shard files the sidecar does not list and for leftovers of
an interrupted write. Each problem names the shard and the record number.
"""

import collections
import dataclasses
import hashlib
import os
import time

from . import _pool
from .encode import ImageCheckError, open_checked
from .errors import VerifyError, printable, quoted
from .jpeg_markers import jpeg_ends_properly
from .record_io import RecordError, hash_rest, iter_file_records, parse_example_bytes
from .sidecar import (
    FEATURES,
    INCOMPLETE_PREFIX,
    PROGRESS_NAME,
    REJECTED_NAME,
    SHARD_NAME_PATTERN,
    is_hex_digest,
    read_sidecar,
)

#: Per shard, report this many problems and count the rest.
_MAX_PROBLEMS_PER_SHARD = 20


@dataclasses.dataclass(frozen=True)
class Problem:
    """One thing that is wrong; ``record`` is None for file-level problems."""

    shard: str
    record: int | None
    message: str

    def __str__(self):
        where = self.shard if self.record is None else f"{self.shard} record {self.record}"
        return f"{where}: {self.message}"


@dataclasses.dataclass
class VerifyReport:
    """What :func:`verify` checked and found."""

    out: str
    shards_checked: int = 0
    records_checked: int = 0
    problems: list = dataclasses.field(default_factory=list)
    warnings: list = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self):
        return not self.problems

    def format(self):
        """Human-readable lines: one per problem and warning, then a verdict."""
        lines = [f"problem: {printable(str(problem))}" for problem in self.problems]
        lines += [f"warning: {printable(warning)}" for warning in self.warnings]
        verdict = "OK" if self.ok else f"FAILED with {len(self.problems)} problem(s)"
        lines.append(
            f"{verdict}: {self.records_checked:,} records in {self.shards_checked} shards checked "
            f"in {self.seconds:.1f} s ({self.out})"
        )
        return "\n".join(lines)


def _record_problems(record, label_to_index):
    """Problems of one parsed Example; returns (class name or None, (height, width) or None, messages)."""
    class_name, messages, size = _check_record(record, label_to_index)
    return class_name, size, messages


def _check_record(record, label_to_index):
    try:
        features = parse_example_bytes(record)
    except (ValueError, UnicodeDecodeError) as error:
        return None, [f"not a valid tf.train.Example: {error}"], None
    messages = []
    for name, spec in FEATURES.items():
        values = features.get(name)
        if values is None or len(values) != 1:
            messages.append(f"feature {name!r} ({spec['dtype']}) is missing or does not hold one value")
    if messages:
        return None, messages, None
    value = {name: values[0] for name, values in features.items()}
    class_name = value["image/class/text"].decode("utf-8", "surrogateescape")
    label = value["image/class/label"]
    expected_label = label_to_index.get(class_name)
    if expected_label is None:
        messages.append(f"class {quoted(class_name)} is not in the sidecar's classes")
    elif label != expected_label:
        messages.append(f"label {label} does not match class {quoted(class_name)}, which has label {expected_label}")
    if value["image/format"] != b"jpeg":
        messages.append(f"image/format is {value['image/format']!r}, expected b'jpeg'")
    encoded = value["image/encoded"]
    try:
        image, found_format = open_checked(encoded, max_pixels=1 << 62)
    except ImageCheckError as error:
        messages.append(f"image does not decode: {error.reason}")
        return class_name, messages, None
    if found_format != "jpeg":
        messages.append(f"image/encoded holds {found_format}, expected jpeg")
    elif not jpeg_ends_properly(encoded):
        messages.append(
            "JPEG has no end-of-image marker (FF D9) after its last scan: tf.io.decode_jpeg (and so load()) "
            "fails on it with 'Invalid JPEG data'. Write the dataset again with this version of tfrecord_tools, "
            "which re-encodes such files"
        )
    channels = {"L": 1, "RGB": 3}.get(image.mode)
    if (image.height, image.width, channels) != (
        value["image/height"], value["image/width"], value["image/channels"]
    ):
        messages.append(
            f"decoded image is {image.height}x{image.width}, mode {image.mode}; features say "
            f"{value['image/height']}x{value['image/width']} with {value['image/channels']} channel(s)"
        )
    if value["image/reencoded"] == 0 and hashlib.sha256(encoded).hexdigest() != value["image/sha256"].decode(
            "ascii", "replace"):
        messages.append("image bytes do not match image/sha256 of the source")
    return class_name, messages, (image.height, image.width)


def verify_shard(task):
    """Check one shard file (runs in a worker process).

    Parameters
    ----------
    task : (str, dict, dict)
        OUT, the shard's sidecar entry, and the label map.

    Returns
    -------
    dict
        ``file``, ``records``, ``class_counts``, ``problems`` (list of
        ``(record or None, message)``) and ``more_problems`` (not listed).
    """
    out, shard, label_to_index = task
    name = shard["file"]
    path = os.path.join(out, name)
    result = {"file": name, "records": 0, "class_counts": {}, "problems": [], "more_problems": 0}

    def add(record, message):
        if len(result["problems"]) < _MAX_PROBLEMS_PER_SHARD:
            result["problems"].append((record, message))
        else:
            result["more_problems"] += 1

    class_counts = collections.Counter()
    digest = hashlib.sha256()
    size = None  # [min_height, max_height, min_width, max_width] of the decoded images
    try:
        with open(path, "rb") as handle:  # one record at a time: a shard is never read whole
            file_bytes = os.fstat(handle.fileno()).st_size
            try:
                for index, _, record in iter_file_records(handle, digest=digest):
                    result["records"] += 1
                    class_name, image_size, messages = _record_problems(record, label_to_index)
                    if class_name is not None:
                        class_counts[class_name] += 1
                    if image_size is not None:
                        height, width = image_size
                        size = [height, height, width, width] if size is None else [
                            min(size[0], height), max(size[1], height), min(size[2], width), max(size[3], width)]
                    for message in messages:
                        add(index, message)
            except RecordError as error:
                add(error.index, f"{error.problem} at byte {error.offset:,}; the rest of the shard cannot be read")
                hash_rest(handle, digest)
    except OSError as error:
        add(None, f"cannot read {path}: {error.strerror}")
        return result
    if file_bytes != shard["bytes"]:
        add(None, f"file is {file_bytes:,} bytes, the sidecar says {shard['bytes']:,}")
    if digest.hexdigest() != shard["sha256"]:
        add(None, "SHA-256 of the file does not match the sidecar")
    result["class_counts"] = dict(class_counts)
    result["image_size"] = size
    if result["records"] != shard["images"]:
        add(None, f"holds {result['records']} records, the sidecar says {shard['images']}")
    expected_counts = {name: count for name, count in shard.get("class_counts", {}).items() if count}
    if dict(class_counts) != expected_counts:
        add(None, f"class counts {dict(sorted(class_counts.items()))} differ from the sidecar's {expected_counts}")
    return result


def _check_split(report, split_name, split, results):
    """Compare a split's sidecar entry (counts, image sizes) with what its shards hold."""
    counts = collections.Counter()
    for result in results:
        counts.update(result["class_counts"])
    expected = {name: count for name, count in split["class_counts"].items() if count}
    if dict(counts) != expected:
        report.problems.append(
            Problem(split_name, None, f"class counts {dict(sorted(counts.items()))} differ from {expected}")
        )
    records = sum(result["records"] for result in results)
    if records != split["images"]:
        report.problems.append(Problem(split_name, None, f"its shards hold {records:,} records, dataset.json "
                                                         f"says {split['images']:,} images"))
    listed_bytes = sum(shard["bytes"] for shard in split["shards"])
    if listed_bytes != split["bytes"]:
        report.problems.append(Problem(split_name, None, f"its shards' sizes add up to {listed_bytes:,} bytes, "
                                                         f"dataset.json says {split['bytes']:,}"))
    sizes = [result.get("image_size") for result in results if result.get("image_size")]
    recorded = split.get("image_size")
    if sizes:
        found = {"min_height": min(size[0] for size in sizes), "max_height": max(size[1] for size in sizes),
                 "min_width": min(size[2] for size in sizes), "max_width": max(size[3] for size in sizes)}
        if recorded != found:
            report.problems.append(Problem(
                split_name, None, f"dataset.json gives the image sizes as {recorded}, the images are {found} "
                "(load() sizes its tensors from dataset.json)"))


def verify(out, *, workers=None, raise_on_error=True):
    """Check every shard, record and image in OUT against its sidecar.

    Parameters
    ----------
    out : str or Path
        A folder written by :func:`tfrecord_tools.write_dataset`.
    workers : int, optional
        Processes checking shards in parallel; default all CPU cores.
    raise_on_error : bool
        Raise :class:`VerifyError` (with ``.report``) when anything is wrong;
        otherwise just return the report.

    Returns
    -------
    VerifyReport

    Raises
    ------
    SidecarError
        ``dataset.json`` is missing or unreadable.
    WorkerDiedError
        A worker process died (killed for memory?).
    VerifyError
        Something is wrong and ``raise_on_error`` is true.
    """
    started = time.perf_counter()
    out = os.path.abspath(os.fspath(out))
    sidecar = read_sidecar(out)
    label_to_index = {name: index for index, name in enumerate(sidecar["classes"])}
    report = VerifyReport(out)
    if sidecar.get("label_to_index", label_to_index) != label_to_index:
        report.problems.append(Problem("dataset.json", None, "label_to_index is not the sorted class order"))
    for split in sidecar["splits"].values():
        for shard in split["shards"]:
            if not is_hex_digest(shard.get("plan_sha256")):
                # Not needed to read the shard, but a re-run of write compares it to recognise its shards.
                report.problems.append(Problem(shard["file"], None, f"dataset.json gives its plan_sha256 as "
                                                                    f"{shard.get('plan_sha256')!r}, not 64 hex digits"))
    tasks = [(out, shard, label_to_index) for split in sidecar["splits"].values() for shard in split["shards"]]
    workers = _pool.usable_workers(workers)
    if workers > 1 and len(tasks) > 1:
        with _pool.start_pool(min(workers, len(tasks))) as pool:
            results = list(pool.map(verify_shard, tasks, doing=f"verifying {out}",
                                    then="run verify again (with fewer --workers if memory is short)"))
    else:
        results = [verify_shard(task) for task in tasks]
    by_file = {result["file"]: result for result in results}
    for result in results:
        report.shards_checked += 1
        report.records_checked += result["records"]
        report.problems.extend(Problem(result["file"], record, message) for record, message in result["problems"])
        if result["more_problems"]:
            report.problems.append(Problem(result["file"], None, f"{result['more_problems']} more problem(s)"))
    for split_name, split in sidecar["splits"].items():
        _check_split(report, split_name, split, [by_file[shard["file"]] for shard in split["shards"]])
    listed = set(by_file)
    for name in sorted(os.listdir(out)):
        if SHARD_NAME_PATTERN.match(name) and name not in listed:
            report.problems.append(Problem(name, None, "shard file is not listed in dataset.json"))
        elif name.startswith(INCOMPLETE_PREFIX):
            report.warnings.append(
                f"{name} is an unfinished file left by an interrupted write (readers ignore it; the next write "
                "into this folder removes it)"
            )
        elif name == PROGRESS_NAME:
            report.warnings.append(f"{name} exists: a later write into this folder did not finish")
    rejected_path = os.path.join(out, REJECTED_NAME)
    if os.path.exists(rejected_path):
        try:
            with open(rejected_path, encoding="utf-8") as handle:
                rejected_lines = sum(1 for line in handle if line.strip())
        except (OSError, UnicodeDecodeError) as error:
            report.problems.append(Problem(REJECTED_NAME, None, f"cannot be read as UTF-8 text: {error}"))
            rejected_lines = None
        totals = sidecar.get("totals")
        expected_rejected = totals.get("rejected") if isinstance(totals, dict) else None
        if rejected_lines is None:
            expected_rejected = None
        if expected_rejected is not None and rejected_lines != expected_rejected:
            report.problems.append(
                Problem(REJECTED_NAME, None, f"lists {rejected_lines} files, the sidecar says {expected_rejected}")
            )
    report.seconds = time.perf_counter() - started
    if raise_on_error and not report.ok:
        first = report.problems[0]
        raise VerifyError(f"{out}: {len(report.problems)} problem(s), first: {first}", report)
    return report
