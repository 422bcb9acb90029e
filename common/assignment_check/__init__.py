"""The assignment's rubric: the student's code measured, the run's numbers checked, each line pass or fail.

Students run it before they hand in, teachers on what they receive::

    python assignment_wildlife.py --check            # probe the code, a quick run, then the rubric
    python -m common.assignment_check OUT            # the rubric of a handed-in output folder (its own numbers)

One module a job: :mod:`.measure` probes the TODO functions in the student's process
(no training), :mod:`.graph` reads a ``tf.data`` pipeline's own graph, :mod:`.answers`
flags non-answers, :mod:`.handin` checks a handed-in folder against itself, and
:mod:`.rubric` turns all of it into lines. Here: what the starter and the solution
share (the questions, the analysis file's layout, what a TODO not written yet says).
"""

from __future__ import annotations

import re

PIPELINES = ("naive", "augmentation", "optimized", "tfrecord")
#: What ``--check`` runs: small enough for a few minutes of CPU, big enough that the
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


def later_epochs_wait_share(result: dict) -> float | None:
    """Share of the epochs after the first that the trainer waited for input, each first batch included.

    Epoch 1 fills the caches and traces the maps; from epoch 2 on a pipeline that
    keeps up (cache, parallel calls, prefetch) leaves the trainer almost never waiting,
    while one that decodes every epoch makes it wait for every batch, the first too
    (a shuffle buffer larger than the split waits for the whole epoch's decoding).
    ``result`` is a pipeline's part result (its ``epochs`` rows); None with one epoch.
    """
    later = result.get("epochs", [])[1:]
    seconds = sum(row["seconds"] for row in later)
    if not later or seconds <= 0:
        return None
    return sum(row["input_wait_share"] * row["seconds"] for row in later) / seconds


def probe(script_globals: dict) -> dict:
    """``--probe``: measure the TODO functions of the script whose globals these are (see :mod:`.measure`)."""
    from common.assignment_check.measure import probe as measure

    return measure(script_globals)


from common.assignment_check.rubric import format_rubric, grade, main, run_check  # noqa: E402

__all__ = ["CHECK_OUT", "PIPELINES", "QUESTIONS", "QUICK_FLAGS", "analysis_markdown", "format_rubric", "grade",
           "later_epochs_wait_share", "main", "measurements", "not_written", "not_written_reason", "probe",
           "results_table", "run_check", "startup_wait_seconds", "steady_wait_share", "todo_name"]
