"""common.plots: the figures' layout, checked on the drawn figure (no pixels compared)."""

import matplotlib

matplotlib.use("Agg")

import numpy as np

from common import plots


def one_epoch():
    return {"CNN": {"loss": [0.5], "accuracy": [0.85], "val_loss": [0.4], "val_accuracy": [0.86]}}


def test_one_epoch_curves_have_a_whole_number_axis_and_distinct_train_and_test_markers():
    figure = plots.training_curves(one_epoch())
    figure.canvas.draw()
    for axis in figure.axes:
        low, high = axis.get_xlim()
        assert low <= 0.5 and high >= 1.5  # not 0.96 to 1.04
        ticks = [tick for tick in axis.get_xticks() if low <= tick <= high]
        assert ticks and all(float(tick).is_integer() for tick in ticks)
        train, test = axis.get_lines()
        assert train.get_marker() != test.get_marker()
        assert train.get_markerfacecolor() != test.get_markerfacecolor()


def test_many_epochs_get_whole_number_ticks_only():
    history = {"loss": list(np.linspace(1, 0.1, 12)), "accuracy": list(np.linspace(0.5, 0.9, 12))}
    figure = plots.training_curves({"CNN": history})
    figure.canvas.draw()
    for axis in figure.axes:
        assert all(float(tick).is_integer() for tick in axis.get_xticks())


def test_grid_titles_do_not_overlap_the_row_above():
    images = np.zeros((16, 32, 32, 3), dtype=np.uint8)
    for titles in (["automobile"] * 16, ["cat\n(true: dog)"] * 16):
        figure = plots.image_grid(images, titles, columns=8, title="a grid")
        figure.canvas.draw()
        renderer = figure.canvas.get_renderer()
        first_row, second_row = figure.axes[0], figure.axes[8]
        first_bottom = first_row.get_window_extent(renderer).y0
        title_top = second_row.title.get_window_extent(renderer).y1
        assert title_top < first_bottom, titles[0]  # display coordinates grow upwards
        suptitle_bottom = figure._suptitle.get_window_extent(renderer).y0
        assert first_row.title.get_window_extent(renderer).y1 < suptitle_bottom
