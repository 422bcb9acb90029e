"""The timeline picture: one row per stage, one bar per span, coloured by the epoch in which the work ran."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from common.timeline.record import Recorder, Span
from common.timeline.summary import stage_names, summarize

_ANNOTATE_LIMIT = 400  # beyond this many spans, index labels would be an unreadable smear
_LABEL_POINTS = 6  # font size of the index labels


def _label_text(values) -> str:
    """Indexes as a short label: ``[0, 1, 2, 3, 8]`` -> ``"0–3,8"``.

    More than two runs (a shuffled batch, say) become ``"lowest…highest (count)"``.
    """
    values = sorted(set(values))
    runs = []
    for value in values:
        if runs and value == runs[-1][1] + 1:
            runs[-1][1] = value
        else:
            runs.append([value, value])
    if len(runs) > 2:
        return f"{values[0]}…{values[-1]} ({len(values)})"
    return ",".join(str(first) if first == last else f"{first}–{last}" for first, last in runs)


def _one_run(examples: np.ndarray) -> bool:
    """Whether a batch's ``(source, epoch, index)`` tags are consecutive examples of one source pass."""
    indexes = np.sort(examples[:, 2])
    return bool(len(np.unique(examples[:, :2], axis=0)) == 1 and np.all(np.diff(indexes) == 1))


def _index_labels(spans: Sequence[Span], origin: float, seconds_per_point: float,
                  row_of: dict[str, int]) -> list[tuple[float, int, str]]:
    """``(x, row, text)`` for the index labels, neighbours that would overlap merged into one.

    A span's label is its index (the batch number for trainer spans), or for a span
    that covers a batch without an index (a batch-wise Map, a block Read) the range of
    its examples' indexes, if they are consecutive examples of one source (a shuffled
    batch gets no label). Within a row, a label that would start less than the
    previous label's width (estimated at 0.6 of the font size per character, plus a
    gap) after it joins that label instead.
    """
    by_row: dict[str, list[tuple[float, list[int]]]] = {}
    for span in spans:
        if span.index >= 0:
            values = [span.index]
        elif span.examples is not None and len(span.examples) and _one_run(span.examples):
            values = [int(value) for value in span.examples[:, 2]]
        else:
            continue  # no index, or a shuffled batch: its examples' indexes would say nothing
        by_row.setdefault(span.stage, []).append((span.start - origin, values))
    labels = []
    for stage, items in by_row.items():
        clusters: list[list] = []  # [x, set of values, text]
        for x, values in sorted(items, key=lambda item: item[0]):
            if clusters:
                last = clusters[-1]
                width = (0.6 * _LABEL_POINTS * len(last[2]) + 3) * seconds_per_point
                if x < last[0] + width:
                    last[1].update(values)
                    last[2] = _label_text(last[1])
                    continue
            clusters.append([x, set(values), _label_text(values)])
        labels.extend((x, row_of[stage], text) for x, _, text in clusters)
    return labels



def draw_timeline(
    timeline: Sequence[Span] | Recorder,
    title: str,
    min_width: float = 0.0,
    annotate: bool = False,
    path=None,
):
    """One row per stage, one bar per span, coloured by epoch, seconds on the x axis.

    Each (stage, epoch) pair is drawn as one ``broken_barh`` collection, so tens of
    thousands of spans draw in seconds. Overlapping bars (parallel calls) are
    translucent, so darker means more at once. Each row's total busy time is
    written at its right end, since bars keep their true length (a row of
    microsecond-long spans can look empty).

    Parameters
    ----------
    timeline : sequence of Span, or a Recorder
    title : str
    min_width : float
        The x axis spans at least this many seconds (the lab's ``min_width``), so
        two runs can be drawn on the same scale.
    annotate : bool
        Write each span's example index (batch number for trainer spans) on its
        bar; skipped, with a note, beyond a few hundred spans.
    path : path-like, optional
        Save the figure there as PNG (atomically) and close it.

    Returns
    -------
    matplotlib Figure (already closed when ``path`` is given).
    """
    import matplotlib

    if "matplotlib.pyplot" not in __import__("sys").modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.transforms import ScaledTranslation

    spans = timeline.spans() if isinstance(timeline, Recorder) else sorted(timeline, key=lambda s: s.start)
    stages = stage_names(spans)
    figure, axis = plt.subplots(figsize=(14, 1.2 + 0.55 * max(len(stages), 1)))
    if not spans:
        axis.text(0.5, 0.5, "no spans recorded", ha="center", va="center", transform=axis.transAxes)
        axis.set_yticks([])
        axis.set_xlim(0, max(min_width, 1.0))
    else:
        origin = min(span.start for span in spans)
        wall = max(span.end for span in spans) - origin
        epochs = sorted({span.epoch for span in spans})
        colours = plt.get_cmap("tab10")
        row_of = {stage: row for row, stage in enumerate(stages)}
        x_limit = max(min_width, wall) * 1.01
        bars_by_row: dict[tuple[str, int], list[tuple[float, float]]] = {}
        for span in spans:
            bars_by_row.setdefault((span.stage, span.epoch), []).append((span.start - origin, span.duration))
        # Bars keep their true length, so a row of 20-microsecond Reads may look empty:
        # each row's total busy time is written at its right end.
        for stage, values in summarize(spans)["stages"].items():
            axis.text(1.005, row_of[stage], f"{_duration(values['busy_seconds'])} busy", fontsize=7,
                      va="center", ha="left", transform=axis.get_yaxis_transform())
        seen_epochs = set()
        for stage in stages:
            row = row_of[stage]
            for epoch in epochs:
                bars = bars_by_row.get((stage, epoch))
                if not bars:
                    continue
                label = f"epoch {epoch + 1}" if epoch not in seen_epochs else None
                seen_epochs.add(epoch)
                axis.broken_barh(bars, (row - 0.4, 0.8), facecolors=colours(epoch % 10),
                                 alpha=0.6, linewidth=0, label=label)
        if annotate and len(spans) <= _ANNOTATE_LIMIT:
            # Labels closer than their own width would print over each other ("0123"):
            # neighbours in a row share one label, "0–3", placed at the first of them.
            axis_points = figure.get_figwidth() * 72 * axis.get_position().width
            for x, row, text in _index_labels(spans, origin, x_limit / axis_points, row_of):
                axis.text(x, row, text, fontsize=_LABEL_POINTS, va="center", ha="left")
        elif annotate:
            axis.text(1.0, 1.01, f"{len(spans):,} spans: index labels left out", fontsize=8,
                      ha="right", va="bottom", transform=axis.transAxes)
        axis.set_yticks(range(len(stages)), stages)
        axis.set_xlim(0, x_limit)
        # The busy-time labels take the space right of the plot and the title its top, so
        # the epochs' legend goes below it, a fixed 30 points under the axes (below the
        # tick labels and the x-axis label, whatever the figure's height), 10 to a row.
        below = axis.transAxes + ScaledTranslation(0, -30 / 72, figure.dpi_scale_trans)
        axis.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), bbox_transform=below,
                    ncol=min(len(epochs), 10), fontsize=8, frameon=False)
    axis.set_ylim(len(stages) - 0.5 if stages else 0.5, -0.5)  # first stage on top
    axis.set_xlabel("time (s)")
    axis.set_title(title)
    axis.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    if path is not None:
        from common.files import save_figure

        save_figure(figure, path)
    return figure


def _duration(seconds: float) -> str:
    """``0.000623`` -> ``"0.6 ms"``, ``2.345`` -> ``"2.35 s"``, ``1234.5`` -> ``"1234 s"``: short labels."""
    if seconds < 0.1:
        return f"{seconds * 1000:.2g} ms" if seconds < 0.01 else f"{seconds * 1000:.0f} ms"
    return f"{seconds:.3g} s" if seconds < 1000 else f"{seconds:.0f} s"
