"""The written answers: what a program can say about them (not their grade), for the teacher who reads them.

A free-text answer cannot be graded by a program, so none is passed. Each is
marked for the teacher to read, with its word count and the numbers of the run it
cites; it is flagged as a non-answer when it is a placeholder ("TODO", "asdf ...",
"lorem ipsum"), mostly one repeated word, shorter than :data:`MIN_WORDS`, or, for
the questions about the run's results, cites none of the run's numbers.
"""

from __future__ import annotations

import math
import re

MIN_WORDS = 20  # fewer words cannot explain a result
MIN_DISTINCT_SHARE = 0.5  # fewer distinct words than this share of all words: one word repeated
PLACEHOLDERS = ("todo", "tbd", "asdf", "qwerty", "lorem", "ipsum", "xxx", "placeholder", "your answer",
                "answer here", "write here", "fill in", "not answered")
# The questions about the run's numbers (the summary asks what each pipeline does).
NEEDS_NUMBERS = ("accuracy", "time", "bottleneck", "tfrecord")
_NUMBER = re.compile(r"(?<![\w.])(\d+(?:[.,]\d+)?)\s*(%|x\b|×)?")
_WORD = re.compile(r"[A-Za-z]+(?:'[a-z]+)?")


def run_numbers(measured: dict) -> list[float]:
    """Every number a good answer may quote: seconds, shares as percentages, accuracies, rates, sizes, ratios."""
    values: list[float] = []

    def collect(value):
        if isinstance(value, bool):
            return
        if isinstance(value, int | float):
            values.append(float(value))
            if 0 < abs(value) <= 1:
                values.append(100.0 * value)  # a share quoted as a percentage
        elif isinstance(value, dict):
            for item in value.values():
                collect(item)
        elif isinstance(value, list | tuple):
            for item in value:
                collect(item)

    collect(measured)
    seconds = {name: row["seconds"] for name, row in measured.get("pipelines", {}).items()}
    values += [slow / fast for slow in seconds.values() for fast in seconds.values() if fast > 0]
    tfrecords = measured.get("tfrecords") or {}
    if tfrecords.get("bytes"):
        values.append(tfrecords["bytes"] / 1e6)  # MB
    return values


def cited_numbers(text: str, numbers: list[float]) -> list[str]:
    """The numbers in ``text`` that are numbers of the run, as written (rounded as the student rounded them)."""
    cited = []
    for match in _NUMBER.finditer(text):
        written = match.group(1).replace(",", ".")
        value = float(written)
        decimals = len(written.split(".")[1]) if "." in written else 0
        tolerance = 0.5 * 10 ** -decimals + 1e-9
        if any(math.isclose(value, number, abs_tol=tolerance) for number in numbers):
            cited.append(match.group(0).strip())
    return cited


def review(key: str, text: str | None, measured: dict) -> dict:
    """What can be said of one answer: ``words``, ``cited`` numbers and, for a non-answer, ``why`` it is one."""
    text = (text or "").strip()
    words = _WORD.findall(text.lower())
    cited = cited_numbers(text, run_numbers(measured)) if text else []
    review = {"words": len(words), "cited": cited}
    lowered = " ".join(words)
    if not words:
        review["why"] = "no answer"
    elif any(re.search(rf"\b{re.escape(placeholder)}\b", lowered) for placeholder in PLACEHOLDERS):
        review["why"] = "a placeholder, not an answer"
    elif len(set(words)) < MIN_DISTINCT_SHARE * len(words):
        review["why"] = f"mostly repeated words ({len(set(words))} different in {len(words)})"
    elif len(words) < MIN_WORDS:
        review["why"] = f"too short ({len(words)} words, at least {MIN_WORDS} expected)"
    elif key in NEEDS_NUMBERS and not cited:
        review["why"] = "cites none of the run's numbers"
    return review
