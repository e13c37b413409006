"""Why did the model say that? Activations and heatmaps, as plain numpy arrays.

Every function here takes ``net``: a ``Net`` from ``load_model``, or any Keras
image classifier (``as_net``: ``load_model(...).model`` gets its registry record
back, any other is fed 0-255 RGB, as ``build_classifier``'s models want). Models
nested as one layer inside another, such as the pretrained base of
``build_classifier``'s models, are looked into (``helpers.graph``).

Every heatmap function takes ``(net, image, class_index=None, ...)`` and returns
a float32 array (h, w) in 0-1 the size of the image as given, 1 where the
evidence for the class is strongest. The model sees the whole image squashed to
its input size (``load_image(..., crop_fraction=None)``), so the heatmap stretches
back over every pixel; an image already at the input size maps exactly.

SmoothGrad and integrated gradients follow the class logit, the score before
the softmax, as in their papers; Grad-CAM follows the log-probability (the
logit minus the log-sum-exp of all logits), which subtracts the evidence for
competing classes; occlusion follows the probability, the number the reader sees.
"""

from __future__ import annotations

import difflib
from typing import Callable, Union

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from .graph import ClassScores, find_layer, gradcam_layer, tap_model
from .images import ImageSource, load_image
from .labels import imagenet_classes
from .models import Net, as_net

# What the explainers accept as the model to explain.
Explainable = Union[Net, keras.Model]


def activations(net: Explainable, image: ImageSource, layers: str | list[str]) -> dict[str, np.ndarray]:
    """The feature maps of some layers for one image.

    Args:
        net: a ``Net`` from ``load_model`` or a ``keras.Model`` (see the module docstring).
        image: a path, PIL image or array (h, w, 3) 0-255; squashed to the model's input size.
        layers: a layer name or a list of them, e.g. ``net.spec.activation_layers``;
            layers of a nested model by their own names.

    Returns:
        per layer name, in the order given, a float32 array (height, width, channels).

    >>> activations(load_model(), "images/coffee.png", "stem_conv_relu")["stem_conv_relu"].shape
    (112, 112, 32)
    """
    net = as_net(net)
    names = [layers] if isinstance(layers, str) else list(layers)
    tapped = tap_model(net.model, [(find_layer(net.model, name), "output") for name in names])
    outputs = tapped(net.preprocess(squashed(net, image)), training=False)
    return {name: np.asarray(out[0]) for name, out in zip(names, outputs)}


def gradcam(net: Explainable, image: ImageSource, class_index: int | str | None = None,
            layer: str | None = None) -> np.ndarray:
    """Grad-CAM: where in the image a convolutional layer sees the class.

    The layer's feature maps weighted by the mean gradient of the class's
    log-probability, summed over channels, negatives dropped (Selvaraju et al.
    2017, who take the logit: the log-probability also subtracts what speaks
    for the other classes, and on photo mosaics points at the right photo more
    often, see benchmarks/explanation_faithfulness.py).

    Args:
        net: a ``Net`` or a ``keras.Model`` classifier, also one with a nested base model.
        image: a path, PIL image or array (h, w, 3) 0-255.
        class_index: an index, an ImageNet label such as ``"espresso"``, or None
            for the top predicted class.
        layer: a layer with a (height, width, channels) output, also inside a
            nested model; None is ``net.spec.last_conv_layer`` for a ``Net``,
            else the last such layer of the model (looking inside nested models).

    Returns:
        float32 array (h, w) in 0-1, the size of ``image``.

    >>> gradcam(load_model(), "images/coffee.png", "espresso").shape
    (400, 600)
    >>> gradcam(build_classifier(load_model(include_top=False), num_classes=3), "images/brick.png", 0).shape
    (512, 512)
    """
    net = as_net(net)
    pixels = load_image(image)
    found = find_layer(net.model, layer) if layer else gradcam_layer(net)
    if len(found.output.shape) != 4:
        raise ValueError(f"Grad-CAM needs a layer with a (height, width, channels) output; {found.name!r} "
                         f"gives {tuple(found.output.shape)}. Try {gradcam_layer(as_net(net.model)).name!r}.")
    scores = ClassScores(net.model, [found])  # the layer's maps and the class logits
    with tf.GradientTape() as tape:
        (maps,), logits = scores(net.preprocess(squashed(net, pixels)))
        target = resolve_class(logits[0], class_index)
        score = tf.nn.log_softmax(logits)[:, target]  # the class's log-probability
    grads = tape.gradient(score, maps)  # same shape as maps
    importance = tf.reduce_mean(grads, axis=(1, 2))  # one number per channel
    cam = tf.nn.relu(tf.reduce_sum(maps * importance[:, None, None, :], axis=-1))[0].numpy()
    return resize_heatmap(_scaled(cam, cam.max()), pixels.shape[:2])


def occlusion(net: Explainable, image: ImageSource, class_index: int | str | None = None, patch: int = 48,
              stride: int | None = None, batch_size: int = 32) -> np.ndarray:
    """Occlusion: how much the class probability falls when a grey square hides a region.

    Args:
        net: a ``Net`` or a ``keras.Model`` classifier (see the module docstring).
        image: a path, PIL image or array (h, w, 3) 0-255.
        class_index: an index, an ImageNet label, or None for the top class.
        patch: side of the grey square, in pixels of the model input.
        stride: step between squares; None is ``patch // 2``.
        batch_size: occluded images per forward pass.

    Returns:
        float32 array (h, w) in 0-1, the size of ``image``: the mean fall of the
        probability over the squares covering each pixel, scaled so the largest
        fall is 1 (no fall anywhere gives zeros).

    >>> occlusion(load_model(), "images/coffee.png", "espresso", patch=56).shape
    (400, 600)
    """
    net = as_net(net)
    pixels = load_image(image)
    height, width = net.input_size
    stride = stride or max(patch // 2, 1)
    if not 0 < stride <= patch <= min(height, width):
        raise ValueError(f"need 0 < stride <= patch <= {min(height, width)} (the model input) so every "
                         f"pixel is covered; got patch={patch}, stride={stride}")
    x = squashed(net, pixels)
    base = class_probabilities(net, x)[0]
    target = resolve_class(base, class_index)
    corners = [(row, col) for row in _starts(height, patch, stride) for col in _starts(width, patch, stride)]
    occluded = np.repeat(x, len(corners), axis=0)
    for copy, (row, col) in zip(occluded, corners):
        copy[row:row + patch, col:col + patch] = 127.5  # mid grey
    probs = class_probabilities(net, occluded, batch_size)[:, target]
    fall, count = np.zeros((height, width), np.float32), np.zeros((height, width), np.float32)
    for (row, col), p in zip(corners, probs):
        fall[row:row + patch, col:col + patch] += base[target] - p
        count[row:row + patch, col:col + patch] += 1
    fall = np.maximum(fall / count, 0)
    return resize_heatmap(_scaled(fall, fall.max()), pixels.shape[:2])


def smoothgrad(net: Explainable, image: ImageSource, class_index: int | str | None = None, samples: int = 16,
               noise: float = 0.15, batch_size: int = 16, seed: int = 0) -> np.ndarray:
    """SmoothGrad: the gradient of the class logit, averaged over noisy copies of the image.

    Args:
        net: a ``Net`` or a ``keras.Model`` classifier (see the module docstring).
        image: a path, PIL image or array (h, w, 3) 0-255.
        class_index: an index, an ImageNet label, or None for the top class.
        samples: noisy copies (Smilkov et al. 2017 find 10-50 enough).
        noise: standard deviation of the Gaussian noise as a fraction of 0-255.
        batch_size: copies per backward pass.
        seed: for the noise; the same seed gives the same heatmap.

    Returns:
        float32 array (h, w) in 0-1, the size of ``image``: absolute averaged
        gradient summed over RGB, clipped at its 99th percentile.

    >>> smoothgrad(load_model(), "images/coffee.png", "espresso", samples=4).shape
    (400, 600)
    """
    net = as_net(net)
    pixels = load_image(image)
    x = squashed(net, pixels)
    rng = np.random.default_rng(seed)
    noisy = x + rng.normal(0.0, noise * 255.0, (samples, *x.shape[1:])).astype(np.float32)
    grads = _gradients(net, noisy, class_index, x, batch_size).mean(axis=0)
    return resize_heatmap(_saliency(np.abs(grads).sum(axis=-1)), pixels.shape[:2])


def integrated_gradients(net: Explainable, image: ImageSource, class_index: int | str | None = None, steps: int = 32,
                         baseline: float = 0.0, batch_size: int = 16) -> np.ndarray:
    """Integrated gradients: the class logit's gradient summed along a path from a blank image.

    Attribution = (image - baseline) x the mean gradient at ``steps`` points
    along the straight path from the baseline to the image (Sundararajan et al. 2017).

    Args:
        net: a ``Net`` or a ``keras.Model`` classifier (see the module docstring).
        image: a path, PIL image or array (h, w, 3) 0-255.
        class_index: an index, an ImageNet label, or None for the top class.
        steps: points on the path.
        baseline: the blank image's pixel value, 0-255 (0 is black).
        batch_size: path points per backward pass.

    Returns:
        float32 array (h, w) in 0-1, the size of ``image``: absolute attribution
        summed over RGB, clipped at its 99th percentile.

    >>> integrated_gradients(load_model(), "images/coffee.png", "espresso", steps=8).shape
    (400, 600)
    """
    net = as_net(net)
    pixels = load_image(image)
    x = squashed(net, pixels)
    blank = np.full_like(x[0], baseline)
    # The gradients are taken on the model's input, after preprocessing, so the
    # difference to the baseline is taken there too: the product is then the
    # same as in pixel units, whatever (affine) preprocessing the model uses.
    alphas = (np.arange(steps, dtype=np.float32) + 0.5) / steps  # midpoint rule
    path = blank + alphas[:, None, None, None] * (x - blank)
    grads = _gradients(net, path, class_index, x, batch_size).mean(axis=0)
    attribution = (net.preprocess(x) - net.preprocess(blank[None]))[0] * grads
    return resize_heatmap(_saliency(np.abs(attribution).sum(axis=-1)), pixels.shape[:2])


# The heatmap methods by name, as the command line's --method and the tests use them.
EXPLAINERS: dict[str, Callable[..., np.ndarray]] = {
    "gradcam": gradcam, "occlusion": occlusion, "smoothgrad": smoothgrad, "integrated_gradients": integrated_gradients,
}


def squashed(net: Net, image: ImageSource) -> np.ndarray:
    """What the explainers feed the model: the whole image squashed to its input size,
    float32 (1, height, width, 3), 0-255."""
    return load_image(image, size=net.input_size, crop_fraction=None)[None]


def class_probabilities(net: Net, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Class probabilities (n, classes) for 0-255 images (n, h, w, 3) already at the input size.

    >>> net = load_model()
    >>> class_probabilities(net, squashed(net, "images/coffee.png")).shape
    (1, 1000)
    """
    # Direct calls, not model.predict: no tf.function to retrace for every model and batch shape.
    return np.concatenate([np.asarray(net.model(net.preprocess(images[start:start + batch_size]), training=False))
                           for start in range(0, len(images), batch_size)])


def resolve_class(scores, class_index: int | str | None) -> int:
    """The class to explain, from one image's scores (classes,): ``class_index`` as given,
    looked up by ImageNet label, or the top score for None.

    >>> resolve_class(np.zeros(1000), "espresso")
    967
    """
    classes = len(scores)
    if class_index is None:
        return int(np.argmax(scores))
    if isinstance(class_index, str):
        if classes != 1000:
            raise ValueError(f"labels name the 1000 ImageNet classes, this model has {classes}: "
                             "pass a class index")
        labels = [label for _, label in imagenet_classes()]
        matches = [i for i, label in enumerate(labels) if label == class_index]
        if not matches:
            close = difflib.get_close_matches(class_index, labels, n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else " (see imagenet_classes())"
            raise ValueError(f"no ImageNet class labelled {class_index!r}{hint}")
        if len(matches) > 1:
            raise ValueError(f"{class_index!r} labels classes {matches}: pass one of these indices")
        return matches[0]
    if not 0 <= int(class_index) < classes:
        raise ValueError(f"class_index {class_index} is out of range: the model has {classes} classes")
    return int(class_index)


def resize_heatmap(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A 0-1 heatmap resized (bilinear) to ``size`` (h, w): float32, still 0-1.

    >>> resize_heatmap(np.eye(2), (4, 4)).shape
    (4, 4)
    """
    height, width = size
    resized = Image.fromarray(np.asarray(heatmap, dtype=np.float32)).resize((width, height), Image.BILINEAR)
    return np.clip(np.asarray(resized, dtype=np.float32), 0, 1)


def _gradients(net: Net, images: np.ndarray, class_index, x: np.ndarray, batch_size: int) -> np.ndarray:
    """Gradients of the class logit for 0-255 images (n, h, w, 3), on the preprocessed input.

    ``x`` is the unperturbed image (1, h, w, 3) that picks the top class when
    ``class_index`` is None.
    """
    scores = ClassScores(net.model, [])
    target = resolve_class(scores(net.preprocess(x))[1][0], class_index)
    grads = []
    for start in range(0, len(images), batch_size):
        inputs = tf.convert_to_tensor(net.preprocess(images[start:start + batch_size]))
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            score = scores(inputs)[1][:, target]
        grads.append(tape.gradient(score, inputs).numpy())
    return np.concatenate(grads)


def _starts(size: int, patch: int, stride: int) -> list[int]:
    """Offsets of patches along one side, the last flush with the edge."""
    starts = list(range(0, size - patch + 1, stride))
    return starts if starts[-1] == size - patch else [*starts, size - patch]


def _scaled(values: np.ndarray, largest: float) -> np.ndarray:
    return values / largest if largest > 0 else np.zeros_like(values)


def _saliency(values: np.ndarray) -> np.ndarray:
    """Scale to 0-1, clipping the brightest 1% that would otherwise flatten the rest."""
    return np.clip(_scaled(values, float(np.percentile(values, 99))), 0, 1)
