"""Pictures of what the compute functions return, as matplotlib Figures.

Each function returns a ``matplotlib.figure.Figure`` and shows nothing itself:
a notebook shows it once as the cell's value, ``fig.savefig("out.png")`` writes
it to a file, and no window opens.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colorbar import Colorbar
from matplotlib.figure import Figure, SubFigure

from .images import ImageSource, load_image, overlay
from .trust import reliability_table


def show_predictions(image: ImageSource, predictions: list[tuple[str, str, float]]) -> Figure:
    """The image beside a bar chart of its top-k classes, best at the top.

    Args:
        image: a path, PIL image or array (h, w, 3) 0-255.
        predictions: ``(wnid, label, score)`` best first, as one entry of
            ``decode_predictions`` or ``Classification.predictions`` gives.

    >>> show_predictions("images/coffee.png", classify(load_model(), ["images/coffee.png"])[0].predictions)
    <Figure size 900x300 with 2 Axes>
    """
    fig = _figure((9, 3))
    picture, bars = fig.subplots(1, 2, width_ratios=[1, 1.6])
    _show(picture, load_image(image) / 255.0)
    labels = [label for _, label, _ in predictions][::-1]
    scores = [score for _, _, score in predictions][::-1]
    bars.barh(labels, scores, color="tab:blue")
    for y, score in enumerate(scores):
        bars.text(score, y, f" {score:.3f}", va="center")
    bars.set_xlim(0, 1.15)
    bars.set_xlabel("probability")
    return fig


def show_activations(maps: np.ndarray | dict[str, np.ndarray], channels: int = 16, columns: int = 4) -> Figure:
    """The most active channels of one or more layers, one block of rows per layer.

    Channels are ranked by their mean activation; each panel is titled with
    its channel number and scaled to its own range (the colorbar: that
    channel's lowest value to its highest).

    Args:
        maps: float array (height, width, channels) for one layer, or the dict
            ``activations`` returns (layer name -> such an array).
        channels: how many channels to show per layer.
        columns: panels per row (4 keeps a row within a notebook's width,
            so each panel shows about 200 px wide).

    >>> show_activations(activations(load_model(), "images/coffee.png", ["stem_conv_relu"]))
    <Figure size 1010x1010 with 17 Axes>
    """
    layers = maps if isinstance(maps, dict) else {"": maps}
    channels = min(channels, max(np.shape(array)[-1] for array in layers.values()))
    columns = min(columns, channels)
    rows = math.ceil(channels / columns)
    fig = _figure((2.4 * columns + 0.5, (2.4 * rows + 0.5) * len(layers)))
    for subfig, (name, array) in zip(np.atleast_1d(fig.subfigures(len(layers), 1)), layers.items()):
        array = np.asarray(array)
        if array.ndim != 3:
            raise ValueError(f"activation maps must be (height, width, channels), got {array.shape} "
                             f"for {name or 'maps'}: pass one image's maps, e.g. activations(...)[layer]")
        subfig.suptitle(name, fontsize="large")
        strongest = np.argsort(array.mean(axis=(0, 1)))[::-1][:channels]
        for ax, channel in zip(subfig.subplots(rows, columns, squeeze=False).flat, strongest):
            _show(ax, array[..., channel], cmap="viridis")
            ax.set_title(f"ch {channel}")
        for ax in subfig.axes[len(strongest):]:
            ax.set_axis_off()
        bar = heatmap_colorbar(subfig, subfig.axes, "each channel's\nlowest to highest", colormap="viridis")
        bar.set_ticks([0, 1], labels=["low", "high"])
    return fig


def overlay_heatmap(image: ImageSource, heatmap: np.ndarray, alpha: float = 0.4, title: str = "") -> Figure:
    """The image with a heatmap blended on top, on one axes, with a colorbar.

    Args:
        image: a path, PIL image or array (h, w, 3) 0-255.
        heatmap: float array (h, w) in 0-1, from ``gradcam``, ``occlusion``, ...
        alpha: weight of the heatmap colours.
        title: shown above the picture.

    >>> overlay_heatmap("images/coffee.png", gradcam(load_model(), "images/coffee.png"), title="Grad-CAM")
    <Figure size 500x400 with 2 Axes>
    """
    fig = _figure((5, 4))
    ax = fig.subplots()
    _show(ax, overlay(image, heatmap, alpha))
    ax.set_title(title)
    heatmap_colorbar(fig, ax)
    return fig


def compare_explanations(image: ImageSource, heatmaps: dict[str, np.ndarray], alpha: float = 0.5,
                         columns: int = 3) -> Figure:
    """The image, then each heatmap blended over it, titled by method, and a colorbar.

    Args:
        image: a path, PIL image or array (h, w, 3) 0-255.
        heatmaps: method name -> float array (h, w) in 0-1, e.g.
            ``{"Grad-CAM": gradcam(net, image), "occlusion": occlusion(net, image)}``.
        alpha: weight of the heatmap colours.
        columns: panels per row (3 keeps a row about the width of a notebook).

    >>> net, image = load_model(), "images/coffee.png"
    >>> compare_explanations(image, {"Grad-CAM": gradcam(net, image), "random": random_heatmap((400, 600))})
    <Figure size 1040x253.333 with 4 Axes>
    """
    if not heatmaps:
        raise ValueError("compare_explanations needs at least one heatmap, e.g. {'Grad-CAM': gradcam(net, image)}")
    pixels = load_image(image)
    columns = min(columns, len(heatmaps) + 1)
    rows = math.ceil((len(heatmaps) + 1) / columns)
    # Panels 3.2 inches (about 300 px) wide; a row as tall as its photos, plus titles.
    height = 3.2 * pixels.shape[0] / pixels.shape[1] + 0.4
    fig = _figure((3.2 * columns + 0.8, height * rows))
    axes = fig.subplots(rows, columns, squeeze=False).flat
    _show(axes[0], pixels / 255.0)
    axes[0].set_title("image")
    for ax, (method, heatmap) in zip(axes[1:], heatmaps.items()):
        _show(ax, overlay(pixels, heatmap, alpha))
        ax.set_title(method)
    for ax in axes[len(heatmaps) + 1:]:
        fig.delaxes(ax)
    heatmap_colorbar(fig, fig.axes[1:])
    return fig


def show_reliability(sets: dict[str, np.ndarray], labels, bins: int = 15) -> Figure:
    """A reliability diagram per set of probabilities, and how many photos each bin of confidence holds.

    Left: accuracy against mean confidence per bin (scikit-learn's ``CalibrationDisplay``
    with "right or wrong" as the outcome and the top probability as its probability),
    with the diagonal a calibrated model follows. Right: the photos per bin, from
    ``reliability_table``, which bins as scikit-learn does. One legend, under both.

    Args:
        sets: name -> probabilities (N, classes), rows summing to 1, for the same N photos,
            e.g. ``{"before": probabilities, "after": apply_temperature(probabilities, t)}``.
        labels: int (N,), the true classes.
        bins: equal-width bins of confidence between 0 and 1.

    >>> show_reliability({"toy": np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]])}, np.array([0, 0, 1]), bins=5)
    <Figure size 900x450 with 2 Axes>
    """
    from sklearn.calibration import CalibrationDisplay

    if not sets:
        raise ValueError("show_reliability needs at least one set, e.g. {'before': probabilities}")
    fig = _figure((9, 4.5))
    curve, counts = fig.subplots(1, 2)
    for name, probabilities in sets.items():
        table = reliability_table(probabilities, labels, bins)  # checks the probabilities, the labels and bins
        p = np.asarray(probabilities, dtype=np.float64)
        CalibrationDisplay.from_predictions(p.argmax(axis=1) == np.asarray(labels), p.max(axis=1), n_bins=bins,
                                            name=name, ax=curve, ref_line=curve.get_legend() is None)
        counts.stairs(table.counts, table.edges, linewidth=2, label=name)
    curve.set(xlabel="confidence (top probability), mean per bin", ylabel="accuracy in the bin",
              xlim=(0, 1), ylim=(0, 1), aspect="equal")
    counts.set(xlabel="confidence (top probability)", ylabel="photos", xlim=(0, 1))
    # One legend under both panels, where it hides no point of either.
    curve.get_legend().remove()
    fig.legend(*curve.get_legend_handles_labels(), loc="outside lower center", ncols=len(sets) + 1)
    return fig


def heatmap_colorbar(fig: Figure | SubFigure, axes: Axes | Iterable[Axes], label: str = "importance",
                     colormap: str = "jet") -> Colorbar:
    """A colorbar from 0 to 1 beside ``axes``, for heatmaps drawn with ``overlay`` or ``imshow``.

    Args:
        fig: the figure (or subfigure) that holds the axes.
        axes: one matplotlib Axes or a list of them, to place the bar beside.
        label: what the colour means.
        colormap: the colormap the heatmaps were drawn with (``overlay``'s default is ``"jet"``).

    >>> from matplotlib.figure import Figure
    >>> fig = Figure()
    >>> heatmap_colorbar(fig, fig.subplots()).ax.get_ylabel()
    'importance'
    """
    mappable = ScalarMappable(norm=plt.Normalize(0, 1), cmap=colormap)
    return fig.colorbar(mappable, ax=axes, label=label, shrink=0.9)


def _figure(size: tuple[float, float]) -> Figure:
    # Made through pyplot so that Jupyter's inline backend can render it, then
    # closed at once so pyplot keeps no reference and does not show it twice.
    fig = plt.figure(figsize=size, layout="constrained")
    plt.close(fig)
    return fig


def _show(ax, picture: np.ndarray, **kwargs) -> None:
    ax.imshow(picture, **kwargs)
    ax.set_xticks([])
    ax.set_yticks([])
