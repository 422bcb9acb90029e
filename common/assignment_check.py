"""The assignment's self-check: a rubric computed from a run's outputs, pass or fail with the measured number.

Students run it before they hand in, teachers on what they receive::

    python assignment_wildlife.py --check            # a quick run (stand-in, --limit), then the rubric
    python -m common.assignment_check OUT            # the rubric of a finished run's output folder

Each line is one requirement of the assignment: every pipeline implemented; the
optimized pipeline at least :data:`MIN_SPEEDUP` times faster than the augmentation
pipeline and waiting for input less than :data:`MAX_INPUT_WAIT` of the time; the
TFRecords verify and the TFRecord pipeline yields the labels of the image files;
every question of :data:`QUESTIONS` answered. The exit status is 0 when every line
passes, 1 otherwise.

The questions and the analysis file's layout live here too, so that the starter
writes the same ``analysis.md`` (with the answers still to write) as the solution.
"""

from __future__ import annotations

import collections
import json
import re
import subprocess
import sys
from pathlib import Path

PIPELINES = ("naive", "augmentation", "optimized", "tfrecord")
MIN_SPEEDUP = 2.0  # optimized against augmentation, whole timed run
# Share of the optimized run's epoch time spent waiting for input, after each loop's first batch:
# a short run's start-up wait (see startup_wait_seconds) would otherwise decide the line.
MAX_INPUT_WAIT = 0.10
MIN_ANSWER_WORDS = 12  # an answer shorter than this is not an answer
#: What ``--check`` runs: small enough for a minute or two of CPU, big enough that the
#: cache and the parallel calls show; 3 epochs, the lab's minimum (two read the cache).
QUICK_FLAGS = ["--limit", "300", "--epochs", "3"]
CHECK_OUT = "outputs/assignment_check"

#: The lab's questions (id -> question), answered in the analysis.
QUESTIONS = {
    "summary": "Briefly summarize what you did: what does each pipeline do, and how do they differ?",
    "accuracy": "Explain the accuracy results. Did augmentation help? Is it possible that the more difficult "
                "training data after input transformation need more epochs to reach a better performance?",
    "time": "Explain the time results. What did the optimizations (parallel calls, cache, prefetch, a "
            "vectorised map) do to the time per epoch and to the time the trainer waited for input?",
    "bottleneck": "Which step is the bottleneck on your device? Why? Did any other step cost more time than "
                  "you expected?",
    "tfrecord": "What did writing the TFRecords cost, and what did reading them change, against reading the "
                "image files? Is it worth it for this dataset?",
}


# ---------------------------------------------------------------------------
# What the starter says about a TODO not written yet


def todo_name(error: BaseException, default: str) -> str:
    """``"TODO 2: the augmentation pipeline"`` from the NotImplementedError of a stub (else ``default``).

    TensorFlow wraps an error raised while it traces a map ("in user code: ..."), so
    the name is searched for in the whole message.
    """
    # Not past a quote: the wrapped message also quotes the source line, raise NotImplementedError("...").
    match = re.search(r"TODO \d+: [^\n\"']*", str(error))
    return match.group(0).strip() if match else default


def not_written(error: BaseException, default: str) -> str:
    """The one-line reason for skipping a part whose TODO raised ``error``."""
    text = str(error)
    if text.startswith("it needs "):
        return text
    return not_written_reason(todo_name(error, default))


def not_written_reason(todo: str) -> str:
    """``"TODO 4: the TFRecords"`` -> ``"TODO 4 not written yet: the TFRecords"``."""
    number, _, title = todo.partition(": ")
    return f"{number} not written yet: {title}" if title else f"{todo} is not written yet"


# ---------------------------------------------------------------------------
# What the analysis sees


def measurements(results: dict, *, epochs: int, train_images: int, test_images: int, is_standin: bool,
                 tfrecords: dict | None) -> dict:
    """The numbers the questions are about, in one JSON-able dict (see the analysis and the rubric).

    ``results`` maps each pipeline that ran to its part's result (``seconds``,
    ``epochs`` rows, ``input_wait_share``, ``stages``, ``test_accuracy``, ...).
    """
    pipelines = {}
    for name, result in results.items():
        pipelines[name] = {
            "seconds": result["seconds"],
            "epoch_seconds": [row["seconds"] for row in result["epochs"]],
            "input_wait_share": result["input_wait_share"] or 0.0,
            "test_accuracy": result["test_accuracy"],
            "images_per_second": result["images_per_second"],
            "busy_seconds": {stage: value["busy_seconds"] for stage, value in result["stages"].items()},
            "startup_wait_seconds": result.get("startup_wait_seconds", 0.0),
        }
    return {"epochs": epochs, "train_images": train_images, "test_images": test_images,
            "is_standin": is_standin, "pipelines": pipelines, "tfrecords": tfrecords}


def startup_wait_seconds(spans) -> float:
    """Seconds the trainer waited for the first batch of each loop (train and test, every epoch).

    That wait is the pipeline starting up (threads, filling the shuffle buffer, the
    first map call): prefetching cannot hide it, and in a short run it is most of the
    input wait of a pipeline that otherwise keeps up.
    """
    return float(sum(span.duration for span in spans if span.stage == "Wait" and span.index == 0))


def steady_wait_share(row: dict) -> float:
    """The input-wait share without each loop's start-up wait (see :func:`startup_wait_seconds`)."""
    waited = row["input_wait_share"] * row["seconds"] - row.get("startup_wait_seconds", 0.0)
    return max(waited, 0.0) / max(row["seconds"], 1e-9)


def results_table(measured: dict) -> str:
    """The comparison as a markdown table, one row per pipeline that ran."""
    lines = ["| pipeline | epoch 1 s | later epochs s | total s | train images/s | test accuracy | input wait |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, row in measured["pipelines"].items():
        later = row["epoch_seconds"][1:]
        later_text = f"{sum(later) / len(later):.1f}" if later else "-"
        lines.append(f"| {name} | {row['epoch_seconds'][0]:.1f} | {later_text} | {row['seconds']:.1f} | "
                     f"{row['images_per_second']:.0f} | {row['test_accuracy']:.4f} | "
                     f"{100 * row['input_wait_share']:.1f}% |")
    return "\n".join(lines)


def analysis_markdown(measured: dict, answers: dict[str, str], *, title: str, missing: str) -> str:
    """``analysis.md``: the run's table, then each question with its answer (or ``missing``)."""
    lines = [f"# {title}", ""]
    if measured["is_standin"]:
        lines += ["Data: the generated **stand-in** (shapes on textures), not the real photos: the numbers show "
                  "the method, not the lab's results.", ""]
    lines += [results_table(measured), ""]
    tfrecords = measured.get("tfrecords")
    if tfrecords:
        lines += [f"TFRecords: {tfrecords['images']:,} images in {tfrecords['shards']} shards "
                  f"({tfrecords['bytes'] / 1e6:.1f} MB), written and verified in {tfrecords['seconds']:.1f} s.", ""]
    for key, question in QUESTIONS.items():
        lines += [f"## {question}", "", (answers.get(key) or "").strip() or missing, ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# The rubric


def grade(out: str | Path) -> list[tuple[bool, str, str]]:
    """``(passed, requirement, measured)`` for every line of the rubric, from the files in ``out``."""
    out = Path(out)
    metrics = _read_json(out / "metrics.json")
    if metrics is None:
        return [(False, "the run finished", f"no readable {out / 'metrics.json'}: run the script first")]
    status = metrics.get("status")
    lines = [(status == "complete", "the run finished",
              f"status {status!r}" + (f" ({metrics['why']})" if metrics.get("why") else ""))]
    # A run that stopped has no "parts" yet, only the parts it finished.
    parts = metrics.get("parts") or {name: "complete" for name in metrics.get("finished_parts", [])}
    skipped = metrics.get("skipped", {})
    results = metrics.get("results", {})
    for name in PIPELINES:
        if parts.get(name) == "complete" and name in results:
            lines.append((True, f"{name} pipeline implemented", f"ran in {results[name]['seconds']:.1f} s"))
        elif parts.get(name) == "complete":
            lines.append((False, f"{name} pipeline implemented",
                          f"it ran, but the run stopped (status {status!r}) before the results were written: "
                          "run the same command again"))
        else:
            lines.append((False, f"{name} pipeline implemented", skipped.get(name) or f"status {parts.get(name)}"))
    if "augmentation" in results and "optimized" in results:
        slow, fast = results["augmentation"]["seconds"], results["optimized"]["seconds"]
        speedup = slow / max(fast, 1e-9)
        lines.append((speedup >= MIN_SPEEDUP, f"optimized >= {MIN_SPEEDUP:.0f}x faster than augmentation",
                      f"{speedup:.1f}x ({slow:.1f} s -> {fast:.1f} s)"))
    else:
        lines.append((False, f"optimized >= {MIN_SPEEDUP:.0f}x faster than augmentation",
                      "needs both pipelines"))
    if "optimized" in results:
        row = {**results["optimized"], "input_wait_share": results["optimized"]["input_wait_share"] or 0.0}
        steady = steady_wait_share(row)
        lines.append((steady < MAX_INPUT_WAIT, f"optimized waits for input < {100 * MAX_INPUT_WAIT:.0f}% of the time",
                      f"{100 * steady:.1f}% after each loop's first batch ({100 * row['input_wait_share']:.1f}% with "
                      f"the {row.get('startup_wait_seconds', 0.0):.1f} s of start-up)"))
    else:
        lines.append((False, f"optimized waits for input < {100 * MAX_INPUT_WAIT:.0f}% of the time",
                      "needs the optimized pipeline"))
    lines += _tfrecord_lines(out, metrics)
    answers = metrics.get("answers") or {}
    short = [key for key in QUESTIONS if len((answers.get(key) or "").split()) < MIN_ANSWER_WORDS]
    lines.append((not short, "every analysis question answered",
                  f"{len(QUESTIONS) - len(short)} of {len(QUESTIONS)}"
                  + (f"; not yet (or under {MIN_ANSWER_WORDS} words): {', '.join(short)}" if short else "")))
    return lines


def _tfrecord_lines(out: Path, metrics: dict) -> list[tuple[bool, str, str]]:
    import tfrecord_tools

    folder = out / "tfrecords"
    if not (folder / "dataset.json").is_file():
        why = (metrics.get("skipped") or {}).get("tfrecords") or f"no {folder / 'dataset.json'}"
        return [(False, "TFRecords verify", why), (False, "TFRecords hold the labels of train.csv and test.csv", why),
                (False, "TFRecord pipeline yields the labels of the files", why)]
    report = tfrecord_tools.verify(folder, workers=1, raise_on_error=False)
    lines = [(report.ok, "TFRecords verify",
              f"{report.records_checked:,} records in {report.shards_checked} shards"
              + ("" if report.ok else f"; {len(report.problems)} problems, first: {report.problems[0]}"))]
    stored = _record_hashes_and_labels(folder)
    if all(_photos_present(out / f"{split}.csv") for split in ("train", "test")):
        expected = {split: _csv_hashes_and_labels(out / f"{split}.csv") for split in ("train", "test")}
        matching = sum(sum((expected[split] & stored.get(split, collections.Counter())).values())
                       for split in expected)
        total = sum(sum(counter.values()) for counter in expected.values())
        same = all(stored.get(split) == expected[split] for split in expected)
        lines.append((same, "TFRecords hold the labels of train.csv and test.csv",
                      f"{matching} of {total} photos with the same label in the same split"))
    else:  # a folder handed in without its photos: only the labels per split can be compared
        expected = {split: collections.Counter((None, label) for _, label in _csv_rows(out / f"{split}.csv"))
                    for split in ("train", "test")}
        labels_of = {split: collections.Counter(label for _, label in counter.elements())
                     for split, counter in stored.items()}
        same = all(labels_of.get(split) == collections.Counter(label for _, label in expected[split].elements())
                   for split in expected)
        lines.append((same, "TFRecords hold the labels of train.csv and test.csv",
                      "the photos the CSV files name are not on this machine, so only the label counts per split "
                      "were compared: " + ("the same" if same else "they differ")))
    yielded = (metrics.get("results", {}).get("tfrecord") or {}).get("labels_yielded")
    if yielded is None:
        lines.append((False, "TFRecord pipeline yields the labels of the files", "the TFRecord pipeline did not run"))
    else:
        wanted = {split: dict(sorted(collections.Counter(label for _, label in counter.elements()).items()))
                  for split, counter in expected.items()}
        got = {split: {int(label): count for label, count in yielded[split].items()} for split in wanted}
        same = got == wanted
        detail = ", ".join(f"{split} {sum(got[split].values())} of {sum(wanted[split].values())}" for split in wanted)
        lines.append((same, "TFRecord pipeline yields the labels of the files",
                      detail + (" per class, as in the CSV files" if same else "; counts per class differ")))
    return lines


def _csv_rows(path: Path) -> list[tuple[str, int]]:
    from common import datasets

    return datasets.read_csv(path) if path.is_file() else []


def _photos_present(path: Path) -> bool:
    return all(Path(image).is_file() for image, _ in _csv_rows(path))


def _csv_hashes_and_labels(path: Path) -> collections.Counter:
    from common import datasets
    from common.files import file_sha256

    if not path.is_file():
        return collections.Counter()
    return collections.Counter((file_sha256(image), label) for image, label in datasets.read_csv(path))


def _record_hashes_and_labels(folder: Path) -> dict[str, collections.Counter]:
    import tfrecord_tools

    sidecar = tfrecord_tools.read_sidecar(folder)
    found = {}
    for split, description in sidecar["splits"].items():
        counter = collections.Counter()
        for shard in description["shards"]:
            for _, _, payload in tfrecord_tools.iter_records((folder / shard["file"]).read_bytes()):
                features = tfrecord_tools.parse_example_bytes(payload)
                counter[(features["image/sha256"][0].decode(), int(features["image/class/label"][0]))] += 1
        found[split] = counter
    return found


def format_rubric(lines: list[tuple[bool, str, str]], out: str | Path) -> str:
    width = max(len(requirement) for _, requirement, _ in lines)
    text = [f"assignment check of {out}:"]
    text += [f"  {'PASS' if passed else 'FAIL'}  {requirement:<{width}}  {measured}"
             for passed, requirement, measured in lines]
    passed = sum(passed for passed, _, _ in lines)
    text.append(f"{passed} of {len(lines)} pass" + ("" if passed == len(lines) else
                                                     ": the FAIL lines say what is missing"))
    return "\n".join(text)


def run_check(script: str | Path, config, out: str | Path = CHECK_OUT) -> int:
    """``--check``: run ``script`` quickly into ``out``, then print the rubric; returns the exit status.

    The run uses :data:`QUICK_FLAGS` on the stand-in, or on ``--data-dir`` when one
    is given; an interrupted check resumes like any run.
    """
    out = Path(out)
    command = [sys.executable, str(script), *QUICK_FLAGS, "--out", str(out)]
    if getattr(config, "data_dir", None) is not None:
        command += ["--data-dir", str(config.data_dir), "--data", config.data]
    else:
        command += ["--data", "standin"]
    if getattr(config, "fresh", False):
        command.append("--fresh")
    print("check: " + " ".join(command[1:]), flush=True)
    try:
        finished = subprocess.run(command)
    except KeyboardInterrupt:
        return 130
    if finished.returncode in (130, 143):
        return finished.returncode
    if finished.returncode != 0:
        print(f"check: the run stopped with exit status {finished.returncode} (see its messages above)")
    rubric = grade(out)
    print(format_rubric(rubric, out), flush=True)
    return 0 if all(passed for passed, _, _ in rubric) else 1


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m common.assignment_check",
                                     description="Print the assignment's rubric for a finished run's output folder.")
    parser.add_argument("out", type=Path, help="the --out folder of a run of assignment_wildlife.py")
    arguments = parser.parse_args(argv)
    if not arguments.out.is_dir():
        parser.error(f"{arguments.out} is not a folder; give the --out folder of a run of assignment_wildlife.py")
    rubric = grade(arguments.out)
    print(format_rubric(rubric, arguments.out))
    return 0 if all(passed for passed, _, _ in rubric) else 1


if __name__ == "__main__":
    sys.exit(main())
