"""What a timeline says in numbers: busy and covered time per stage, the input-wait share, a comparison table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from common.timeline.record import STAGE_ORDER, Span


def summarize(spans: Sequence[Span]) -> dict[str, Any]:
    """Per stage, how much work and how much wall time; and the trainer's input-wait share.

    Returns
    -------
    dict with
    ``wall_seconds``: first start to last end;
    ``stages``: per stage ``count``, ``busy_seconds`` (sum of durations: work done,
    which exceeds wall time when parallel calls overlap), ``covered_seconds`` (wall
    time during which at least one span of the stage ran), and ``epochs`` (the
    epochs it appears in);
    ``input_wait_share``: time the trainer spent in ``Wait`` spans divided by the
    time of its ``Epoch`` spans (``None`` without Epoch spans).
    """
    spans = list(spans)
    if not spans:
        return {"wall_seconds": 0.0, "stages": {}, "input_wait_share": None}
    first = min(span.start for span in spans)
    last = max(span.end for span in spans)
    stages = {}
    for stage in stage_names(spans):
        mine = [span for span in spans if span.stage == stage]
        stages[stage] = {
            "count": len(mine),
            "busy_seconds": float(sum(span.duration for span in mine)),
            "covered_seconds": _covered_seconds(mine),
            "epochs": sorted({span.epoch for span in mine}),
        }
    epoch_seconds = stages.get("Epoch", {}).get("busy_seconds", 0.0)
    wait_seconds = stages.get("Wait", {}).get("busy_seconds", 0.0)
    return {
        "wall_seconds": last - first,
        "stages": stages,
        "input_wait_share": wait_seconds / epoch_seconds if epoch_seconds > 0 else None,
    }


def compare(runs: dict[str, dict]) -> tuple[list[dict[str, Any]], str]:
    """One row per pipeline run, as a list of dicts and as a fixed-width text table.

    Parameters
    ----------
    runs : dict
        ``{pipeline name: run}``, each run a dict with ``seconds`` (its epochs' time),
        ``epochs`` (the rows :func:`timelined_benchmark` returns) and ``timeline``
        (:func:`summarize` of its spans).

    Returns
    -------
    rows : list of dict
        ``pipeline``, ``total_s``, ``epoch_s`` (list), ``images_per_s`` (training
        images per second of training loop), ``test_accuracy`` (last epoch),
        ``input_wait_share``, and ``pipeline_stages_after_epoch_1``: which of Open,
        Read and Map ran in a later training epoch (none of them behind a cache
        placed after them).
    text : str
        The rows as a table, one line per pipeline under a header.
    """
    rows = []
    for name, run in runs.items():
        epochs, stages = run["epochs"], run["timeline"]["stages"]
        train_seconds = sum(row["train_seconds"] for row in epochs)
        rows.append({
            "pipeline": name,
            "total_s": run["seconds"],
            "epoch_s": [row["seconds"] for row in epochs],
            "images_per_s": sum(row["train_images"] for row in epochs) / train_seconds if train_seconds else 0.0,
            "test_accuracy": epochs[-1]["test_accuracy"],
            "input_wait_share": run["timeline"]["input_wait_share"],
            "pipeline_stages_after_epoch_1": sorted(
                stage for stage in ("Open", "Read", "Map")
                if any(epoch > 0 for epoch in stages.get(stage, {}).get("epochs", []))),
        })
    header = (f"{'pipeline':<10} {'total s':>8} {'per-epoch s':>18} {'images/s':>9} {'test acc':>9} "
              f"{'input wait':>10}")
    lines = [header, "-" * len(header)]
    for row in rows:
        per_epoch = " / ".join(f"{seconds:.1f}" for seconds in row["epoch_s"])
        wait = row["input_wait_share"]
        wait = f"{100 * wait:>9.1f}%" if wait is not None else f"{'-':>10}"
        lines.append(f"{row['pipeline']:<10} {row['total_s']:>8.1f} {per_epoch:>18} {row['images_per_s']:>9.0f} "
                     f"{row['test_accuracy']:>9.4f} {wait}")
    return rows, "\n".join(lines) + "\n"


def _covered_seconds(spans: Sequence[Span]) -> float:
    """Length of the union of the spans' intervals."""
    intervals = sorted((span.start, span.end) for span in spans)
    total, current_start, current_end = 0.0, None, None
    for start, end in intervals:
        if current_end is None or start > current_end:
            if current_end is not None:
                total += current_end - current_start
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    if current_end is not None:
        total += current_end - current_start
    return float(total)


def stage_names(spans: Sequence[Span]) -> list[str]:
    """The stages present in ``spans``, in :data:`STAGE_ORDER`, then any others sorted."""
    present = {span.stage for span in spans}
    known = [stage for stage in STAGE_ORDER if stage in present]
    return known + sorted(present - set(known))
