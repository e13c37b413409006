"""Does a heatmap show what the model uses? Scores for any heatmap, as plain numbers.

Two checks from the literature, both model-agnostic:

- **Deletion and insertion** (Petsiuk et al. 2018, "RISE"). Delete the
  pixels a heatmap ranks most relevant first, and follow the class
  probability: a faithful heatmap makes it fall fast (a small area under the
  curve). Or start from a blurred photo and reveal the pixels most relevant
  first: the probability should rise fast (a large area). A random heatmap
  gives the baseline to beat. Grey speckle ruins a photo whatever its order,
  so deletion favours heatmaps of scattered pixels: compare those with a
  random heatmap of single pixels, and weigh insertion more.
- **Model randomisation** (Adebayo et al. 2018). Scramble the weights of the
  top layers of a copy of the model and explain again: an explanation of the
  model must change (low rank correlation with the original map); one that
  stays the same shows the photo (its edges), not what the model learned.

Like the explainers, these work on the whole photo squashed to the model's
input size; a heatmap is stretched over it the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import keras
import numpy as np
from PIL import Image, ImageFilter
from scipy.stats import spearmanr

from .explain import Explainable, class_probabilities, resolve_class, squashed
from .graph import all_layers, is_nested
from .images import ImageSource, load_image
from .models import as_net

# What deleted pixels become: mid-grey, the colour occlusion's patches have too
# (RISE fills with zeros after normalisation, the dataset's mean colour).
DELETED_VALUE = 127.5
# Insertion starts from the photo blurred this much (RISE: a Gaussian of sigma 5 on 224 pixels).
BLUR_SIGMA = 5 / 224


@dataclass(frozen=True)
class Curve:
    """The class probability as more and more of the photo is deleted or revealed.

    Attributes:
        fractions: float32 (steps + 1,), 0 to 1: the share of pixels deleted or revealed.
        probabilities: float32 (steps + 1,): the class probability at each fraction.
        auc: area under the curve, 0-1 (trapezoid rule). Deletion: lower is
            more faithful; insertion: higher is.
        class_index: the class followed.
    """

    fractions: np.ndarray
    probabilities: np.ndarray
    auc: float
    class_index: int


@dataclass(frozen=True)
class RandomizationCheck:
    """An explanation before and after the top layers' weights were scrambled.

    Attributes:
        original: float32 (h, w) heatmap of the model as trained.
        randomized: float32 (h, w) heatmap of the copy with scrambled layers.
        layers: names of the scrambled layers, from the output down.
        spearman: rank correlation of the two maps, -1 to 1; near 1 means the
            explanation ignores what those layers learned; 0 when either map is
            constant (nothing to rank).
    """

    original: np.ndarray
    randomized: np.ndarray
    layers: list[str]
    spearman: float


def deletion_curve(net: Explainable, image: ImageSource, heatmap: np.ndarray, class_index: int | str | None = None,
                   steps: int = 32, batch_size: int = 33, seed: int = 0) -> Curve:
    """Delete pixels most-relevant-first (to grey) and follow the class probability.

    Args:
        net: a ``Net`` or a ``keras.Model`` classifier, as the explainers take.
        image: a path, PIL image or array (h, w, 3) 0-255.
        heatmap: float array (h, w) the size of ``image`` or of the model
            input, larger = more relevant, as the explainers return. Ties
            (e.g. Grad-CAM's zeros) are broken at random.
        class_index: an index, an ImageNet label, or None for the top class.
        steps: points on the curve after the first (the photo as it is).
        batch_size: images per forward pass.
        seed: for breaking ties in the heatmap.

    Returns:
        A ``Curve``; its ``auc`` is lower for a more faithful heatmap.

    >>> net = load_model()
    >>> curve = deletion_curve(net, "images/coffee.png", gradcam(net, "images/coffee.png"), steps=8)
    >>> curve.auc < deletion_curve(net, "images/coffee.png", random_heatmap((400, 600)), steps=8).auc
    True
    """
    return _curve(net, image, heatmap, class_index, steps, batch_size, seed, insert=False)


def insertion_curve(net: Explainable, image: ImageSource, heatmap: np.ndarray, class_index: int | str | None = None,
                    steps: int = 32, batch_size: int = 33, seed: int = 0) -> Curve:
    """Reveal pixels most-relevant-first on a blurred copy and follow the class probability.

    Arguments as for ``deletion_curve``. Blurring rather than blanking keeps
    the start free of sharp edges the model could react to.

    Returns:
        A ``Curve``; its ``auc`` is higher for a more faithful heatmap.

    >>> net = load_model()
    >>> curve = insertion_curve(net, "images/coffee.png", gradcam(net, "images/coffee.png"), steps=8)
    >>> curve.auc > insertion_curve(net, "images/coffee.png", random_heatmap((400, 600)), steps=8).auc
    True
    """
    return _curve(net, image, heatmap, class_index, steps, batch_size, seed, insert=True)


def random_heatmap(shape: tuple[int, int], grid: int | None = 7, seed: int = 0) -> np.ndarray:
    """A heatmap that knows nothing: the baseline every explanation should beat.

    Args:
        shape: (h, w) of the heatmap, e.g. ``image.shape[:2]``.
        grid: side of a coarse grid of random values stretched over the image
            (7 gives blobs the size of Grad-CAM's on a 7x7 layer); None gives
            one random value per pixel.
        seed: the same seed gives the same heatmap.

    Returns:
        float32 array (h, w) in 0-1.

    >>> random_heatmap((300, 451)).shape
    (300, 451)
    """
    rng = np.random.default_rng(seed)
    if grid is None:
        return rng.random(shape, dtype=np.float32)
    coarse = Image.fromarray(rng.random((grid, grid), dtype=np.float32))
    return np.clip(np.asarray(coarse.resize(shape[::-1], Image.BILINEAR), np.float32), 0, 1)


def randomization_check(net: Explainable, image: ImageSource, explainer: Callable[..., np.ndarray],
                        class_index: int | str | None = None, scrambled_layers: int = 3,
                        seed: int = 0) -> RandomizationCheck:
    """Explain with the model as trained and with its top layers scrambled; compare.

    The weights of the last ``scrambled_layers`` layers that have weights (counted from
    the output, inside nested models too) are shuffled on a copy of the model,
    which keeps their distribution and destroys what they learned; the model
    itself is not touched. BatchNorm's moving statistics are left as they are.

    Args:
        net: a ``Net`` or a ``keras.Model`` classifier, as the explainers take.
        image: a path, PIL image or array (h, w, 3) 0-255.
        explainer: a function ``(net, image, class_index) -> heatmap``, e.g. ``gradcam``.
        class_index: an index, an ImageNet label, or None for the top class
            (of the trained model; both maps explain that class).
        scrambled_layers: how many layers with weights to scramble.
        seed: for the shuffling.

    Returns:
        A ``RandomizationCheck``; its ``spearman`` should be low for an
        explanation that depends on the model.

    >>> check = randomization_check(load_model(), "images/coffee.png", gradcam)
    >>> check.layers, check.spearman < 0.5
    (['predictions', 'head_conv_bn', 'head_conv'], True)
    """
    pixels = load_image(image)  # decoded once, for the scores and both maps
    net = as_net(net)
    target = resolve_class(class_probabilities(net, squashed(net, pixels))[0], class_index)
    original = explainer(net, pixels, target)
    scrambled, names = _scrambled_copy(net.model, scrambled_layers, seed)
    randomized = explainer(replace(net, model=scrambled), pixels, target)
    # A constant map (no evidence anywhere) has no ranks to correlate: it shares nothing with the other.
    constant = np.ptp(original) == 0 or np.ptp(randomized) == 0
    rho = 0.0 if constant else float(spearmanr(original.ravel(), randomized.ravel()).statistic)
    return RandomizationCheck(original, randomized, names, rho)


def _curve(net: Explainable, image: ImageSource, heatmap: np.ndarray, class_index, steps: int, batch_size: int,
           seed: int, insert: bool) -> Curve:
    """Probabilities along a path of images, pixels switched in heatmap order: from the
    photo to grey (deletion), or from a blurred copy to the photo (insertion)."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    pixels = load_image(image)
    net = as_net(net)
    x = squashed(net, pixels)[0]
    if insert:
        blur = ImageFilter.GaussianBlur(BLUR_SIGMA * max(x.shape[:2]))
        start, end = np.asarray(Image.fromarray(x.astype(np.uint8)).filter(blur), dtype=np.float32), x
    else:
        start, end = x, np.full_like(x, DELETED_VALUE)
    height, width = x.shape[:2]
    relevance = _relevance(heatmap, pixels.shape[:2], (height, width))
    # Rank of each pixel, 0 = most relevant; random keys break ties so that flat
    # regions are not taken in reading order.
    keys = np.random.default_rng(seed).random(relevance.size)
    order = np.lexsort((keys, -relevance.ravel()))
    rank = np.empty(relevance.size, np.int64)
    rank[order] = np.arange(relevance.size)
    rank = rank.reshape(height, width)
    counts = np.round(np.linspace(0, relevance.size, steps + 1)).astype(np.int64)
    probabilities = []
    for first in range(0, steps + 1, batch_size):
        switched = rank[None] < counts[first:first + batch_size, None, None]
        probabilities.append(class_probabilities(net, np.where(switched[..., None], end[None], start[None]),
                                                 batch_size))
    probabilities = np.concatenate(probabilities)
    # The photo itself is the last image of an insertion path and the first of a deletion path.
    target = resolve_class(probabilities[-1 if insert else 0], class_index)
    curve = probabilities[:, target].astype(np.float32)
    fractions = (counts / relevance.size).astype(np.float32)
    return Curve(fractions, curve, float(np.trapezoid(curve, fractions)), target)


def _relevance(heatmap: np.ndarray, image_shape: tuple[int, int], input_size: tuple[int, int]) -> np.ndarray:
    """The heatmap stretched (bilinear) to the model input, as the photo is: float32 (h, w)."""
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if heatmap.shape not in (tuple(image_shape), tuple(input_size)):
        raise ValueError(f"heatmap of shape {heatmap.shape} fits neither the image {tuple(image_shape)} nor "
                         f"the model input {tuple(input_size)}: pass the heatmap computed for this image")
    if not np.isfinite(heatmap).all():
        raise ValueError("heatmap has NaN or infinite values")
    resized = Image.fromarray(heatmap).resize(input_size[::-1], Image.BILINEAR)
    return np.asarray(resized, dtype=np.float32)


def _scrambled_copy(model: keras.Model, count: int, seed: int) -> tuple[keras.Model, list[str]]:
    """A copy of ``model`` with the learned weights of its last ``count`` weighted layers shuffled."""
    if count < 1:
        raise ValueError(f"scrambled_layers must be at least 1, got {count}")
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    weighted = [layer for layer in all_layers(copy) if layer.weights and not is_nested(layer)][::-1][:count]
    rng = np.random.default_rng(seed)
    for layer in weighted:
        for variable in layer.weights:
            if variable.path.rsplit("/", 1)[-1] in ("moving_mean", "moving_variance"):
                continue
            values = np.asarray(variable.numpy())
            variable.assign(rng.permutation(values.ravel()).reshape(values.shape))
    return copy, [layer.name for layer in weighted]
