"""The rubric's lines: the probe's measurements and the run's numbers turned into PASS, FAIL, READ and INFO lines.

Each line belongs to a TODO (or to the run) and has an id that a points table can
name (``todo3.cache``). PASS and FAIL lines decide the exit status; READ lines are
the answers, for the teacher to read; INFO lines say what was graded or measure
what is too noisy for a verdict (test accuracy on a few hundred photos); SKIP lines
were not measured in this grading (a handed-in folder without a re-run).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from common.assignment_check import (
    CHECK_OUT,
    PIPELINES,
    QUESTIONS,
    QUICK_FLAGS,
    later_epochs_wait_share,
)
from common.assignment_check.answers import review

SECTIONS = {
    "graded": "What was graded",
    "todo1": "TODO 1: the augmentation map",
    "todo2": "TODO 2: the augmentation pipeline",
    "todo3": "TODO 3: the optimized pipeline",
    "todo4": "TODO 4: the TFRecords",
    "todo5": "TODO 5: the TFRecord pipeline",
    "todo6": "TODO 6: the answers (for the teacher to read)",
    "run": "The run",
}
# The optimized pipeline alone against the augmentation pipeline alone (medians of interleaved epochs).
# Between the reference's slowest ratio with two busy loops beside it (4.2x) and a TODO 3 without parallel
# calls, cache or prefetch that batches before its map (2.2x): benchmarks/rubric_timing.py's table.
MIN_PIPELINE_SPEEDUP = 3.0
# Share of the epochs after the first that the optimized trainer waits for input (each first batch included).
MAX_INPUT_WAIT = 0.10
MIN_SAME_LABEL = 0.95  # share of the images that must carry their own photo's label
VALUE_TOLERANCE = 1e-5  # float32 crops in [0, 1] may round a hair outside it


@dataclass
class Line:
    """One line of the rubric."""

    id: str
    requirement: str
    status: str  # PASS, FAIL, READ, INFO or SKIP
    measured: str

    @property
    def section(self) -> str:
        return self.id.split(".")[0]


def check(line_id: str, requirement: str, passed: bool, measured: str) -> Line:
    return Line(line_id, requirement, "PASS" if passed else "FAIL", measured)


def grade(out: str | Path, probe: str | Path | None = None) -> list[Line]:
    """Every line of the rubric for the run in ``out``, and for the probe (given, or ``out/probe/probe.json``).

    Without a probe the lines that need one are SKIP: a handed-in folder alone holds
    the student's own numbers, not a measurement of the code.
    """
    out = Path(out)
    metrics = _read_json(out / "metrics.json")
    probe_path = Path(probe) if probe is not None else out / "probe" / "probe.json"
    measured_code = _read_json(probe_path)
    lines = _graded(out, metrics, measured_code, probe_path)
    if measured_code is not None:
        lines += _augment_lines(measured_code["augment"])
        lines += _pipeline_lines(measured_code)
        lines += _tfrecord_lines(probe_path.parent, "the probe's run")
    else:
        lines += [Line(f"{section}.measured", "measured by a re-run", "SKIP",
                       "needs --check or the teacher's grader (this folder holds the student's own numbers)")
                  for section in ("todo1", "todo2", "todo3", "todo5")]
        lines += _tfrecord_lines(out, "the handed-in folder")
    lines += _answer_lines(metrics)
    lines += _run_lines(out, metrics, handed_in=measured_code is None)
    return lines


def _graded(out: Path, metrics, measured_code, probe_path) -> list[Line]:
    lines = []
    if measured_code is not None:
        graded = measured_code["graded"]
        data = "the stand-in" if graded["is_standin"] else "the real photos"
        lines.append(Line("graded.code", "the code, measured by the probe", "INFO",
                          f"{data}, --limit {graded['limit']}, {graded['train_images']} train / "
                          f"{graded['test_images']} test photos, script sha256 {graded['code_sha256'][:12]} "
                          f"({probe_path})"))
    state = _read_json(out / "run.json") or {}
    if metrics is not None or state:
        settings = state.get("settings") or {}
        data = (metrics or {}).get("data") or {}
        code = state.get("code_sha256") or "?"
        where = (("the stand-in" if data.get("is_standin") else "the real photos") if data
                 else f"--data {settings.get('data')}")
        lines.append(Line("graded.run", "the run", "INFO",
                          f"{where}, --limit {settings.get('limit')}, {settings.get('epochs')} epochs, script sha256 "
                          f"{code[:12]}"))
        if measured_code is not None and code != "?" and code != measured_code["graded"]["code_sha256"]:
            lines.append(check("graded.same_code", "the run and the probe ran the same script", False,
                               f"run {code[:12]}, probe {measured_code['graded']['code_sha256'][:12]}"))
    return lines


# --------------------------------------------------------------------------- TODO 1


def _augment_lines(found: dict) -> list[Line]:
    if "error" in found:
        return [check("todo1.written", "augment is written and runs", False, found["error"])]
    crop = found["expected_shape"]
    shape_ok = found["batch_shape"] == [found["batch_size"], *crop] and found["single_shape"] == crop
    range_ok = -VALUE_TOLERANCE <= found["minimum"] and found["maximum"] <= 1 + VALUE_TOLERANCE
    floats = found["dtype"].startswith(("float", "bfloat"))
    return [
        check("todo1.crops", f"crops of {crop[0]}x{crop[1]}x3 in [0, 1]", shape_ok and range_ok and floats,
              f"batch {found['batch_shape']}, one image {found['single_shape']}, {found['dtype']} in "
              f"[{found['minimum']:.3f}, {found['maximum']:.3f}]"),
        check("todo1.per_image", "each image of a batch augmented on its own", found["distinct_in_batch"] ==
              found["batch_size"], f"{found['distinct_in_batch']} different of {found['batch_size']} copies of one "
              "photo"),
        check("todo1.per_draw", "a new augmentation at every call", found["draws_differ"],
              "two calls on one photo " + ("differ" if found["draws_differ"] else "give the same crop")),
        check("todo1.one_or_batch", "one image and a batch alike", len(found["single_shape"]) == 3 and
              len(found["batch_shape"]) == 4, f"one image -> {found['single_shape']}, a batch -> "
              f"{found['batch_shape']}"),
    ]


# --------------------------------------------------------------------------- TODOs 2, 3, 5


def _pipeline_lines(measured_code: dict) -> list[Line]:
    lines = []
    pipelines, labels = measured_code["pipelines"], measured_code.get("labels") or {}
    timing = measured_code.get("timing") or {}
    for todo, name in (("todo2", "augmentation"), ("todo3", "optimized"), ("todo5", "tfrecord")):
        found = pipelines.get(name, {})
        why = found.get("error") or found.get("failed")
        if why:
            title = "TFRecord" if name == "tfrecord" else name
            lines.append(check(f"{todo}.written", f"the {title} pipeline is written and runs", False, why))
            continue
        structure = found["structure"]["train"]
        if todo in ("todo3", "todo5"):
            lines += _structure_lines(todo, name, structure)
        lines.append(_whole_split_line(todo, found))
        if todo == "todo2":
            per_image = found["map_spans_epoch_2"] == found["expected_images"]["train"]
            lines.append(check("todo2.per_image", "augments one image at a time (a Map span per image)", per_image,
                               f"{found['map_spans_epoch_2']} Map spans for {found['expected_images']['train']} "
                               "training images in epoch 2"))
        if todo == "todo3":
            decoded_later = [stage for stage in found["stages_after_epoch_1"] if stage in ("Open", "Read", "Decode")]
            again = ", ".join(decoded_later) + " again" if decoded_later else "no reading or decoding"
            lines.append(check("todo3.decoded_once", "photos read and decoded in epoch 1 only (the cache)",
                               not decoded_later, f"after epoch 1: {again}"))
        lines.append(_labels_line(todo, labels.get(name), labels.get("error")))
        if todo == "todo5":
            lines.append(_reads_records_line(labels.get("tfrecord_permuted"), labels.get("error")))
    lines += _speed_lines(timing, pipelines)
    return lines


def _structure_lines(todo: str, name: str, structure: dict) -> list[Line]:
    chain = " -> ".join(op.removesuffix("Dataset").removesuffix("DatasetV2").removesuffix("DatasetV3")
                        for op in structure["ops"])
    random = structure["random_map"]
    no_random = "no map with random ops in the train pipeline (is augment mapped in graph code?)"
    return [
        check(f"{todo}.parallel", "a parallel map or interleave (num_parallel_calls > 1 or AUTOTUNE)",
              structure["parallel"], chain if structure["parallel"] else f"no parallel calls in {chain}"),
        check(f"{todo}.cache", "a cache before the random map", structure["cache_before_random_map"],
              chain if structure["cache_before_random_map"] else (no_random if not random else
                                                                   f"no cache before the random map in {chain}")),
        check(f"{todo}.batch_first", "batching before the vectorised (random) map",
              structure["batch_before_random_map"],
              chain if structure["batch_before_random_map"] else (no_random if not random else
                                                                   f"the random map comes before batch in {chain}")),
        check(f"{todo}.prefetch", "a prefetch at the end of the train pipeline", structure["prefetch_at_end"],
              chain if structure["prefetch_at_end"] else f"no prefetch at the end of the train pipeline: {chain}"),
    ]


def _whole_split_line(todo: str, found: dict) -> Line:
    expected = found["expected_images"]
    shape = found["expected_shape"]
    epochs = found["epochs"]
    problems = []
    for number, row in enumerate(epochs, start=1):
        if row["images"] != expected["train"]:
            problems.append(f"epoch {number} yields {row['images']} of {expected['train']} training images")
        if not row["right_shape"] and row["images"]:
            problems.append(f"epoch {number} yields images of shape {row['shapes']}, not {shape}")
        if row["images"] and not (-VALUE_TOLERANCE <= row["minimum"] and row["maximum"] <= 1 + VALUE_TOLERANCE):
            problems.append(f"epoch {number}: values in [{row['minimum']:.3f}, {row['maximum']:.3f}], not [0, 1]")
        if row["images"] and row["dtypes"] != ["float32"]:
            problems.append(f"epoch {number}: dtype {row['dtypes']}, not float32")
    test = epochs[0].get("test", {}) if epochs else {}
    if test.get("images") != expected["test"]:
        problems.append(f"the test pipeline yields {test.get('images')} of {expected['test']} test images")
    measured = (f"{len(epochs)} epochs of {expected['train']} training images of {shape}, in [0, 1], and "
                f"{expected['test']} test images" if not problems else "; ".join(problems[:3]))
    return check(f"{todo}.whole_split", "every epoch yields the whole split, shaped and scaled right", not problems,
                 measured)


def _labels_line(todo: str, found: dict | None, error: str | None) -> Line:
    if not found:
        return check(f"{todo}.labels", "each image keeps its photo's label", False,
                     f"not measured: {error or 'the pipeline did not run'}")
    same = sum(split["same_label"] for split in found.values())
    images = sum(split["images"] for split in found.values())
    recognised = sum(split["recognised"] for split in found.values())
    detail = ", ".join(f"{split} {counts['same_label']} of {counts['images']}" for split, counts in found.items())
    measured = (f"{detail} images carry the label of the photo they show (matched by content to train.csv and "
                "test.csv)")
    if recognised < MIN_SAME_LABEL * images:
        measured += (f"; only {recognised} of {images} images were recognised: with augment swapped for the centre "
                     "crop they should all be (does the pipeline map `augment` and `center_crop`?)")
    return check(f"{todo}.labels", "each image keeps its photo's label", images > 0 and same >= MIN_SAME_LABEL * images,
                 measured)


def _reads_records_line(found: dict | None, error: str | None) -> Line:
    requirement = "reads its labels from the records"
    if not found:
        return check("todo5.reads_records", requirement, False, f"not measured: {error or 'no permuted run'}")
    same = sum(split["same_label"] for split in found.values())
    images = sum(split["images"] for split in found.values())
    passed = images > 0 and same >= MIN_SAME_LABEL * images
    return check("todo5.reads_records", requirement, passed,
                 f"on a copy of the records with every class renamed to the next, {same} of {images} images carry "
                 "the renamed label" + ("" if passed else ": the labels do not come from the records (does it read "
                                                          "TFRECORD_DIR with tfrecord_tools.load?)"))


def _speed_lines(timing: dict, pipelines: dict) -> list[Line]:
    medians = timing.get("median_seconds", {})
    requirement = f"optimized pipeline alone >= {MIN_PIPELINE_SPEEDUP:g}x faster than the augmentation pipeline"
    if "optimized" not in medians or "augmentation" not in medians:
        return [check("todo3.speed", requirement, False, "needs both pipelines to run")]
    slow, fast = medians["augmentation"], medians["optimized"]
    speedup = slow / max(fast, 1e-9)
    lines = [check("todo3.speed", requirement, speedup >= MIN_PIPELINE_SPEEDUP,
                   f"{speedup:.1f}x: an epoch takes {fast:.2f} s against {slow:.2f} s (medians of "
                   f"{timing['epochs_timed']} interleaved epochs, after one that filled the caches; no model)")]
    if "tfrecord" in medians:
        lines.append(Line("todo5.speed", "TFRecord pipeline alone against the optimized one", "INFO",
                          f"an epoch takes {medians['tfrecord']:.2f} s against {fast:.2f} s"))
    return lines


# --------------------------------------------------------------------------- TODO 4


def _tfrecord_lines(folder: Path, where: str) -> list[Line]:
    import tfrecord_tools
    from common.assignment_check.handin import records_match_csv

    records = folder / "tfrecords"
    if not (records / "dataset.json").is_file():
        why = f"no {records / 'dataset.json'} in {where}"
        return [check("todo4.verify", "the TFRecords verify", False, why),
                check("todo4.labels", "the records hold the photos and labels of train.csv and test.csv", False, why)]
    report = tfrecord_tools.verify(records, workers=1, raise_on_error=False)
    matched, detail = records_match_csv(folder)
    return [check("todo4.verify", "the TFRecords verify", report.ok,
                  f"{report.records_checked:,} records in {report.shards_checked} shards ({where})"
                  + ("" if report.ok else f"; {len(report.problems)} problems, first: {report.problems[0]}")),
            check("todo4.labels", "the records hold the photos and labels of train.csv and test.csv", matched, detail)]


# --------------------------------------------------------------------------- TODO 6 and the run


def _answer_lines(metrics: dict | None) -> list[Line]:
    answers = (metrics or {}).get("answers") or {}
    measured = (metrics or {}).get("measured") or {}
    lines = []
    for key in QUESTIONS:
        found = review(key, answers.get(key), measured)
        cited = ", ".join(found["cited"][:6]) or "none"
        if "why" in found:
            lines.append(check(f"todo6.{key}", f"answer: {key}", False, f"{found['why']}; {found['words']} words"))
        else:
            lines.append(Line(f"todo6.{key}", f"answer: {key}", "READ",
                              f"{found['words']} words, cites the run's {cited}"))
    return lines


def _run_lines(out: Path, metrics: dict | None, *, handed_in: bool) -> list[Line]:
    if metrics is None:
        return [check("run.finished", "the run finished", False, f"no readable {out / 'metrics.json'}: run the "
                      "script first")]
    status = metrics.get("status")
    lines = [check("run.finished", "the run finished", status == "complete",
                   f"status {status!r}" + (f" ({metrics['why']})" if metrics.get("why") else ""))]
    results = metrics.get("results") or {}
    skipped = metrics.get("skipped") or {}
    for name in PIPELINES:
        if name in results:
            lines.append(check(f"run.{name}", f"{name} pipeline trained", True,
                               f"{len(results[name]['epochs'])} epochs in {results[name]['seconds']:.1f} s"))
        else:
            lines.append(check(f"run.{name}", f"{name} pipeline trained", False,
                               skipped.get(name) or f"not in the run (status {status!r})"))
    requirement = f"optimized trainer waits for input < {100 * MAX_INPUT_WAIT:.0f}% after epoch 1"
    if "optimized" in results:
        share = later_epochs_wait_share(results["optimized"])
        lines.append(check("run.input_wait", requirement, share is not None and share < MAX_INPUT_WAIT,
                           "needs 2 epochs or more" if share is None else
                           f"{100 * share:.1f}% of epochs 2-{len(results['optimized']['epochs'])}, first batches "
                           "included"))
    else:
        lines.append(check("run.input_wait", requirement, False, "the optimized pipeline did not train"))
    if results:
        lines.append(Line("run.accuracy", "test accuracy (a few hundred photos: too noisy for a verdict)", "INFO",
                          ", ".join(f"{name} {result['test_accuracy']:.2f}" for name, result in results.items())))
    if handed_in:
        from common.assignment_check.handin import consistency

        problems = consistency(out, metrics)
        lines.append(check("run.consistent", "metrics.json agrees with results.md and the per-epoch rows",
                           not problems, "; ".join(problems) or "they agree"))
    return lines


# --------------------------------------------------------------------------- output


def format_rubric(lines: list[Line], out: str | Path) -> str:
    """The rubric as text: a header per section, one line per check, the tally."""
    width = max((len(line.requirement) for line in lines), default=0)
    text = [f"assignment check of {out}:"]
    for section, title in SECTIONS.items():
        mine = [line for line in lines if line.section == section]
        if mine:
            text.append(title)
            text += [f"  {line.status}  {line.requirement:<{width}}  {line.measured}" for line in mine]
    checks = [line for line in lines if line.status in ("PASS", "FAIL")]
    passed = sum(line.status == "PASS" for line in checks)
    reads = sum(line.status == "READ" for line in lines)
    skips = sum(line.status == "SKIP" for line in lines)
    tally = f"{passed} of {len(checks)} checks pass"
    tally += "" if passed == len(checks) else ": the FAIL lines say what is missing"
    tally += f"; {reads} answer(s) for the teacher to read" if reads else ""
    tally += f"; {skips} section(s) not measured (run python assignment_wildlife.py --check)" if skips else ""
    return "\n".join([*text, tally])


def to_json(lines: list[Line]) -> list[dict]:
    return [asdict(line) for line in lines]


def run_check(script: str | Path, config, out: str | Path = CHECK_OUT) -> int:
    """``--check``: probe the script's code, run it quickly, then print the rubric; returns the exit status.

    Both runs start fresh (``--fresh``): a check never reads back results that other
    code wrote. They use :data:`QUICK_FLAGS` on the stand-in, or on ``--data-dir``.
    """
    out = Path(out)
    data = (["--data-dir", str(config.data_dir), "--data", config.data] if getattr(config, "data_dir", None)
            else ["--data", "standin"])
    for command in ([sys.executable, str(script), *QUICK_FLAGS, *data, "--probe", "--fresh", "--out",
                     str(out / "probe")],
                    [sys.executable, str(script), *QUICK_FLAGS, *data, "--fresh", "--out", str(out)]):
        print("check: " + " ".join(command[1:]), flush=True)
        try:
            finished = subprocess.run(command)
        except KeyboardInterrupt:
            return 130
        if finished.returncode in (130, 143):
            return finished.returncode
        if finished.returncode != 0:
            print(f"check: the run stopped with exit status {finished.returncode} (see its messages above)")
    lines = grade(out)
    print(format_rubric(lines, out), flush=True)
    return 0 if all(line.status != "FAIL" for line in lines) else 1


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m common.assignment_check",
        description="The assignment's rubric for an output folder of assignment_wildlife.py. Without a probe (the "
                    "folder's probe/probe.json, or --probe) it grades the student's own numbers; the code itself "
                    "is measured by python assignment_wildlife.py --check or the teacher's grader.")
    parser.add_argument("out", type=Path, help="the --out folder of a run of assignment_wildlife.py")
    parser.add_argument("--probe", type=Path, default=None, help="a probe.json to grade the code with")
    parser.add_argument("--json", type=Path, default=None, help="also write the lines as JSON here")
    arguments = parser.parse_args(argv)
    if not arguments.out.is_dir():
        parser.error(f"{arguments.out} is not a folder; give the --out folder of a run of assignment_wildlife.py")
    lines = grade(arguments.out, arguments.probe)
    print(format_rubric(lines, arguments.out))
    if arguments.json:
        arguments.json.write_text(json.dumps(to_json(lines), indent=2) + "\n", encoding="utf-8")
    return 0 if all(line.status != "FAIL" for line in lines) else 1
