"""The predicted-vs-measured figure: both sets, their figures in a title that fits the picture."""

from __future__ import annotations

import numpy as np
import pytest

from prednas.errors import PredNASError
from prednas.tracking import plots


def test_predicted_vs_measured_shows_the_cross_validated_training_set_beside_the_picks():
    rng = np.random.default_rng(0)
    train = rng.normal(70, 2, 30)
    picks = rng.normal(71, 1, 10)
    figure = plots.predicted_vs_measured(picks, picks + 3, training=(train, train + rng.normal(0, 1, 30)))
    ax = figure.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["training set, cross-validated (n=30)", "top-K picks (n=10)", "y = x"]
    title = ax.get_title(loc="left")
    assert "training set, cross-validated: Kendall tau" in title and "top-K picks: Kendall tau" in title
    figure.canvas.draw()  # the whole title lies inside the figure
    box = ax.title.get_window_extent() if ax.get_title() else ax._left_title.get_window_extent()
    width, height = figure.canvas.get_width_height()
    assert box.x0 >= 0 and box.x1 <= width and box.y1 <= height


def test_predicted_vs_measured_checks_the_training_pairs():
    with pytest.raises(PredNASError, match="training values"):
        plots.predicted_vs_measured([1.0, 2.0], [1.0, 2.0], training=([1.0, 2.0], [1.0]))
