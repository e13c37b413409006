import io

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

from helpers.plots import compare_explanations, overlay_heatmap, show_activations, show_predictions
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


def test_show_activations_one_layer_or_one_block_per_layer():
    assert len(_drawn(show_activations(RNG.uniform(0, 6, (14, 14, 40)))).axes) == 16
    maps = {"stem": RNG.uniform(0, 6, (28, 28, 8)), "head": RNG.uniform(0, 6, (7, 7, 64))}
    assert len(_drawn(show_activations(maps, channels=4)).axes) == 8
    # Fewer channels than asked: one panel each.
    assert len(_drawn(show_activations(RNG.uniform(0, 6, (7, 7, 5)))).axes) == 5


def test_show_activations_names_a_wrong_shape():
    with pytest.raises(ValueError, match="must be \\(height, width, channels\\), got \\(1, 7, 7, 5\\)"):
        show_activations({"head": np.zeros((1, 7, 7, 5))})


def test_overlay_heatmap_one_axes():
    assert len(_drawn(overlay_heatmap(IMAGE, HEATMAP, title="Grad-CAM")).axes) == 1


def test_compare_explanations_image_then_one_panel_per_method():
    heatmaps = {name: HEATMAP for name in ["Grad-CAM", "occlusion", "SmoothGrad", "IG"]}
    fig = _drawn(compare_explanations(IMAGE, heatmaps))
    assert [ax.get_title() for ax in fig.axes] == ["image", *heatmaps]
