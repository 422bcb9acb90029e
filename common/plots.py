"""Figures the lab scripts share: image grids, training curves, confusion matrices.

Each function returns a matplotlib ``Figure``; save it with ``run.save_figure(figure,
name)`` (or ``common.files.save_figure(figure, path)``), which also shows it inline
under Jupyter. Outside Jupyter the Agg backend is selected unless a backend was
chosen already, so scripts run on machines without a screen.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

import matplotlib

if "matplotlib.pyplot" not in sys.modules and "ipykernel" not in sys.modules:
    matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator


def image_grid(
    images: np.ndarray,
    titles: Sequence[str] | None = None,
    *,
    columns: int = 8,
    title: str | None = None,
    title_colors: Sequence[str] | None = None,
    cmap: str | None = None,
):
    """A grid of images with optional per-image titles.

    Parameters
    ----------
    images : (N, H, W) or (N, H, W, C) ndarray
        uint8 in [0, 255] or float. Float images outside [0, 1] (for example
        standardised ones) are rescaled per image to [0, 1] for display only.
    titles : sequence of N str, optional
    columns : int
    title : str, optional
        Figure title.
    title_colors : sequence of N colour names, optional
        For example green for a correct prediction and red for a wrong one.
    cmap : str, optional
        Colour map for single-channel images (default: gray).
    """
    images = np.asarray(images)
    count = len(images)
    columns = max(1, min(columns, count))
    rows = max(1, -(-count // columns))
    # Each row is an image plus room for its title's lines (constrained layout keeps them apart).
    title_lines = max((str(text).count("\n") + 1 for text in titles), default=0) if titles is not None else 0
    row_height = 1.6 + 0.16 * title_lines
    figure, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, row_height * rows + (0.4 if title else 0)),
                                squeeze=False, layout="constrained")
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index >= count:
            continue
        image = _displayable(images[index])
        if image.ndim == 2 or image.shape[-1] == 1:
            axis.imshow(image.squeeze(), cmap=cmap or "gray", interpolation="nearest")
        else:
            axis.imshow(image, interpolation="nearest")
        if titles is not None:
            color = title_colors[index] if title_colors is not None else "black"
            axis.set_title(titles[index], fontsize=8, color=color)
    if title:
        figure.suptitle(title)
    return figure


def prediction_grid(images, true_labels, predicted_labels, class_names, *, columns=8, title=None):
    """:func:`image_grid` titled "predicted (true)", green when right and red when wrong.

    Parameters
    ----------
    images : (N, H, W[, C]) ndarray
    true_labels, predicted_labels : (N,) int arrays
    class_names : sequence of str
    """
    titles, colors = [], []
    for truth, predicted in zip(true_labels, predicted_labels, strict=True):
        if truth == predicted:
            titles.append(str(class_names[predicted]))
            colors.append("green")
        else:
            titles.append(f"{class_names[predicted]}\n(true: {class_names[truth]})")
            colors.append("red")
    return image_grid(images, titles, columns=columns, title=title, title_colors=colors)


def training_curves(histories: Mapping[str, Mapping[str, Sequence[float]]], title: str | None = None):
    """Loss and accuracy per epoch for one or more models.

    Parameters
    ----------
    histories : mapping of model name to a Keras ``History.history`` dict
        Keys used: ``loss``, ``accuracy`` and, when present, ``val_loss`` and
        ``val_accuracy`` (drawn dashed, with hollow square markers; train points
        are filled circles, so a 1-epoch run still tells them apart). The epoch
        axis has whole-number ticks.
    """
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(11, 4))
    epochs = 1
    for name, history in histories.items():
        for axis, metric in ((loss_axis, "loss"), (accuracy_axis, "accuracy")):
            if metric in history:
                values = history[metric]
                epochs = max(epochs, len(values))
                line = axis.plot(range(1, len(values) + 1), values, marker="o", markersize=6,
                                 label=f"{name} train")[0]
                if f"val_{metric}" in history:
                    validation = history[f"val_{metric}"]
                    epochs = max(epochs, len(validation))
                    axis.plot(
                        range(1, len(validation) + 1), validation, marker="s", markersize=7, linestyle="--",
                        color=line.get_color(), markerfacecolor="white", label=f"{name} test",
                    )
    for axis, label in ((loss_axis, "loss"), (accuracy_axis, "accuracy")):
        axis.set_xlabel("epoch")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
        axis.set_xlim(0.5, epochs + 0.5)  # one epoch is a point at 1, not an axis from 0.96 to 1.04
        axis.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def confusion_matrix_figure(y_true, y_pred, class_names: Sequence[str], title: str | None = None):
    """A confusion matrix with counts in each cell and per-class recall on the rows.

    Parameters
    ----------
    y_true, y_pred : (N,) int arrays with values in ``range(len(class_names))``
    class_names : sequence of str
    """
    class_count = len(class_names)
    matrix = np.zeros((class_count, class_count), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    row_totals = matrix.sum(axis=1, keepdims=True)
    recall = np.divide(matrix, row_totals, out=np.zeros(matrix.shape), where=row_totals > 0)
    size = max(5.0, 0.6 * class_count + 2)
    figure, axis = plt.subplots(figsize=(size + 1, size))
    image = axis.imshow(recall, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axis, fraction=0.046, label="share of the true class")
    axis.set_xticks(range(class_count), class_names, rotation=45, ha="right")
    axis.set_yticks(range(class_count), class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    for row in range(class_count):
        for column in range(class_count):
            axis.text(
                column, row, str(matrix[row, column]), ha="center", va="center", fontsize=7,
                color="white" if recall[row, column] > 0.5 else "black",
            )
    accuracy = np.trace(matrix) / max(1, matrix.sum())
    axis.set_title(f"{title + ': ' if title else ''}accuracy {accuracy:.4f}")
    figure.tight_layout()
    return figure


def _displayable(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    image = image.astype(np.float32)
    low, high = float(image.min()), float(image.max())
    if low >= 0.0 and high <= 1.0:
        return image
    return (image - low) / (high - low) if high > low else np.zeros_like(image)
