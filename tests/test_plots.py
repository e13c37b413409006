import io

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

from helpers.plots import compare_explanations, heatmap_colorbar, overlay_heatmap, show_activations, show_predictions
from support import IMAGES

RNG = np.random.default_rng(0)
IMAGE = RNG.uniform(0, 255, (60, 80, 3)).astype(np.float32)
HEATMAP = RNG.uniform(0, 1, (60, 80)).astype(np.float32)


def _drawn(fig):
    assert isinstance(fig, Figure)
    fig.savefig(io.BytesIO(), format="png")  # renders without a screen
    assert plt.get_fignums() == []  # pyplot keeps nothing open, so a notebook shows it once
    return fig


def test_show_predictions_image_and_bars():
    predictions = [("n07920052", "espresso", 0.9), ("n07930864", "cup", 0.05), ("n03063599", "coffee_mug", 0.01)]
    fig = _drawn(show_predictions(IMAGES / "coffee.png", predictions))
    picture, bars = fig.axes
    assert [t.get_text() for t in bars.get_yticklabels()] == ["coffee_mug", "cup", "espresso"]


def _panels(fig):
    return [ax for ax in fig.axes if ax.get_title()]


def test_show_activations_one_layer_or_one_block_per_layer():
    fig = _drawn(show_activations(RNG.uniform(0, 6, (14, 14, 40))))
    assert len(_panels(fig)) == 16 and len(fig.axes) == 17  # and one colorbar
    maps = {"stem": RNG.uniform(0, 6, (28, 28, 8)), "head": RNG.uniform(0, 6, (7, 7, 64))}
    fig = _drawn(show_activations(maps, channels=4))
    assert len(_panels(fig)) == 8 and len(fig.axes) == 10  # a colorbar per layer
    # Fewer channels than asked: one panel each.
    assert len(_panels(_drawn(show_activations(RNG.uniform(0, 6, (7, 7, 5)))))) == 5


@pytest.mark.parametrize("draw", [lambda: show_activations(RNG.uniform(0, 6, (14, 14, 40))),
                                  lambda: compare_explanations(IMAGE, {name: HEATMAP for name in "abcd"}),
                                  lambda: overlay_heatmap(IMAGE, HEATMAP)])
def test_panels_readable_in_a_notebook(draw):
    # At matplotlib's default 100 dpi: panels about 200 px or more on their shorter side, and a figure
    # about as wide as a notebook's output area (wider ones are shrunk to fit).
    fig = _drawn(draw())
    width, height = fig.axes[0].get_window_extent().size  # the first panel
    assert min(width, height) >= 190, (width, height)
    assert fig.get_figwidth() * fig.dpi <= 1050


def test_show_activations_names_a_wrong_shape():
    with pytest.raises(ValueError, match="must be \\(height, width, channels\\), got \\(1, 7, 7, 5\\)"):
        show_activations({"head": np.zeros((1, 7, 7, 5))})


def test_overlay_heatmap_one_axes_and_a_colorbar():
    picture, bar = _drawn(overlay_heatmap(IMAGE, HEATMAP, title="Grad-CAM")).axes
    assert picture.get_title() == "Grad-CAM" and bar.get_ylabel() == "importance"


def test_compare_explanations_image_then_one_panel_per_method():
    heatmaps = {name: HEATMAP for name in ["Grad-CAM", "occlusion", "SmoothGrad", "IG"]}
    fig = _drawn(compare_explanations(IMAGE, heatmaps))
    assert [ax.get_title() for ax in fig.axes] == ["image", *heatmaps, ""]
    assert fig.axes[-1].get_ylabel() == "importance"
    with pytest.raises(ValueError, match="at least one heatmap"):
        compare_explanations(IMAGE, {})


def test_heatmap_colorbar_spans_zero_to_one_in_the_colormap():
    fig, ax = plt.subplots()
    plt.close(fig)
    bar = heatmap_colorbar(fig, ax, "share of the score", colormap="viridis")
    assert bar.mappable.norm.vmin == 0 and bar.mappable.norm.vmax == 1
    assert bar.mappable.cmap.name == "viridis" and bar.ax.get_ylabel() == "share of the score"


def test_show_reliability_draws_each_set_with_the_diagonal_and_the_counts():
    from helpers import show_reliability

    p = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4], [0.8, 0.2]])
    fig = _drawn(show_reliability({"before": p, "after": np.full((4, 2), 0.5)}, np.array([0, 0, 1, 0]), bins=5))
    curve, counts = fig.axes
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["Perfectly calibrated", "before", "after"]
    assert len(curve.lines) == 3 and len(counts.patches) == 2  # the diagonal and two curves; two step lines
    assert min(fig.get_size_inches() * fig.dpi) >= 190
    with pytest.raises(ValueError, match="at least one set"):
        show_reliability({}, np.array([0]))
    with pytest.raises(ValueError, match="labels must be"):
        show_reliability({"before": p}, np.array([0, 1]))
    with pytest.raises(ValueError, match="bins must be at least 1"):
        show_reliability({"before": p}, np.array([0, 0, 1, 0]), bins=0)
