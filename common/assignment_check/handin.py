"""A handed-in output folder checked against itself: its numbers agree, its TFRecords hold its CSV files' photos.

Nothing here re-runs the student's code: these are the student's own numbers, so
the checks are that they agree with each other (``metrics.json``, ``results.md`` and
the per-epoch rows of every pipeline) and that the TFRecords verify and hold, record
by record, the photos and labels of ``train.csv`` and ``test.csv``. That works
without the photos: each record stores its file's path below the split folder
(``train/deer/x.jpg``) and class, matched to the CSV row whose path ends the same way.
"""

from __future__ import annotations

import collections
import csv
import re
from pathlib import Path

PIPELINE_ROW = re.compile(r"^\|\s*(\w+)\s*\|(.+)\|\s*$")


def consistency(out: Path, metrics: dict) -> list[str]:
    """Every disagreement between ``metrics.json``, ``results.md`` and the per-epoch rows, in words."""
    problems = []
    results = metrics.get("results") or {}
    measured = (metrics.get("measured") or {}).get("pipelines", {})
    for name, result in results.items():
        rows = result.get("epochs") or []
        if not rows:
            problems.append(f"{name}: no per-epoch rows")
            continue
        seconds, accuracy = _float(result.get("seconds")), _float(result.get("test_accuracy"))
        total = sum(_float(row.get("seconds")) or 0.0 for row in rows)
        if seconds is None or abs(total - seconds) > 0.05 + 1e-3 * total:
            problems.append(f"{name}: {_shown(seconds, '.1f')} s in all, but its epochs add up to {total:.1f} s")
        if _float(rows[-1].get("test_accuracy")) != accuracy:
            problems.append(f"{name}: test accuracy {_shown(accuracy, '.4f')}, its last epoch's "
                            f"{_shown(_float(rows[-1].get('test_accuracy')), '.4f')}")
        summary = measured.get(name)
        if summary is not None:
            for key, value in (("seconds", seconds), ("test_accuracy", accuracy)):
                other = _float(summary.get(key))
                if value is None or other is None or abs(other - value) > 1e-6:
                    problems.append(f"{name}: {key} {_shown(value, '.4g')} in results, "
                                    f"{_shown(other, '.4g')} in measured")
    table = _results_md(out / "results.md")
    if table is None:
        problems.append("no results.md")
    for name, result in results.items():
        row = (table or {}).get(name)
        if table is not None and row is None:
            problems.append(f"{name}: not in results.md")
        elif row is not None:
            seconds, accuracy = _float(result.get("seconds")), _float(result.get("test_accuracy"))
            if seconds is None or abs(row[0] - seconds) > 0.051:
                problems.append(f"{name}: {_shown(seconds, '.1f')} s in metrics.json, {row[0]:.1f} s in results.md")
            if accuracy is None or abs(row[1] - accuracy) > 0.00006:
                problems.append(f"{name}: test accuracy {_shown(accuracy, '.4f')} in metrics.json, "
                                f"{row[1]:.4f} in results.md")
    return problems


def _float(value) -> float | None:
    """``value`` as a float, or None when a hand edit made it something other than a number."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _shown(value: float | None, spec: str) -> str:
    return "not a number" if value is None else format(value, spec)


def _results_md(path: Path) -> dict[str, tuple[float, float]] | None:
    """``{pipeline: (total s, test accuracy)}`` from the table ``results_table`` writes."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    table = {}
    for line in lines:
        match = PIPELINE_ROW.match(line)
        if not match or match.group(1) == "pipeline":
            continue
        cells = [cell.strip() for cell in match.group(2).split("|")]
        try:
            table[match.group(1)] = (float(cells[2]), float(cells[4]))
        except (IndexError, ValueError):
            continue
    return table


def csv_rows(path: Path) -> list[tuple[str, int]]:
    """``(img_path, label)`` rows of one of the lab's CSV files (none when it is missing)."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return [(row["img_path"], int(row["label"])) for row in csv.DictReader(handle)]
    except (OSError, KeyError, ValueError):
        return []


def records(folder: Path) -> dict[str, list[dict]]:
    """Per split, each record's ``filename`` (below SRC), ``label``, ``text`` and ``sha256``."""
    import tfrecord_tools

    found = {}
    for split, description in tfrecord_tools.read_sidecar(folder)["splits"].items():
        rows = []
        for shard in description["shards"]:
            for _, _, payload in tfrecord_tools.iter_records((folder / shard["file"]).read_bytes()):
                features = tfrecord_tools.parse_example_bytes(payload)
                rows.append({"filename": features["image/filename"][0].decode(),
                             "label": int(features["image/class/label"][0]),
                             "text": features["image/class/text"][0].decode(),
                             "sha256": features["image/sha256"][0].decode()})
        found[split] = rows
    return found


def records_match_csv(out: Path) -> tuple[bool, str]:
    """Whether every record is a row of its split's CSV file, same photo and same label, and no row is missing.

    The photo is the same when the CSV path ends with the record's path below its split
    folder (``deer/x.jpg``), and, where the photos are on this machine, when its bytes
    have the record's SHA-256.
    """
    from common.files import file_sha256

    folder = out / "tfrecords"
    found = records(folder)
    matched, total, problems = 0, 0, []
    photos_here = True
    for split in ("train", "test"):
        rows = csv_rows(out / f"{split}.csv")
        total += len(rows)
        by_tail = collections.defaultdict(list)
        for path, label in rows:
            by_tail[Path(path).parts[-1]].append((path, label))
        unused = collections.Counter((path, label) for path, label in rows)
        for record in found.get(split, []):
            tail = Path(record["filename"]).parts[1:]  # below the split folder: <class>/.../<file>
            candidates = [(path, label) for path, label in by_tail.get(tail[-1], [])
                          if Path(path).parts[-len(tail):] == tail and unused[(path, label)]]
            if not candidates:
                problems.append(f"{split}: {record['filename']} is no row of {split}.csv")
                continue
            path, label = candidates[0]
            unused[(path, label)] -= 1
            if label != record["label"]:
                problems.append(f"{split}: {record['filename']} has label {record['label']}, {split}.csv says {label}")
                continue
            if Path(path).is_file():
                if file_sha256(path) != record["sha256"]:
                    problems.append(f"{split}: {record['filename']} holds other bytes than {path}")
                    continue
            else:
                photos_here = False
            matched += 1
        missing = sum(unused.values())
        if missing:
            problems.append(f"{split}: {missing} row(s) of {split}.csv have no record")
    how = "path and label" + (", and the photo's SHA-256" if photos_here else " (the photos are not on this "
                                                                               "machine: bytes not compared)")
    detail = f"{matched} of {total} photos with the same {how}"
    return not problems and matched == total, detail + (f"; first problem: {problems[0]}" if problems else "")
