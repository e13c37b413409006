"""Why did the model say that? Activations and heatmaps, as plain numpy arrays.

Every heatmap function takes ``(net, image, class_index=None, ...)`` and returns
a float32 array (h, w) in 0-1 the size of the image as given, 1 where the
evidence for the class is strongest. The model sees the whole image squashed to
``net.input_size`` (``load_image(..., crop=None)``), so the heatmap stretches
back over every pixel; an image already at the input size maps exactly.

Gradient methods (Grad-CAM, SmoothGrad, integrated gradients) follow the class
logit, the score before the softmax, as in the papers; occlusion follows the
softmax probability, the number the reader sees.
"""

from __future__ import annotations

import difflib

import numpy as np
import tensorflow as tf
import keras
from matplotlib import colormaps
from PIL import Image
from tf_explain.core.grad_cam import GradCAM
from tf_explain.utils.image import apply_grey_patch

from .images import load_image
from .labels import class_index as imagenet_classes
from .models import Net


def activations(net: Net, image, layers: str | list[str]) -> dict[str, np.ndarray]:
    """The feature maps of some layers for one image.

    Args:
        net: from ``load_model``.
        image: a path, PIL image or array (h, w, 3) 0-255; squashed to ``net.input_size``.
        layers: a layer name or a list of them, e.g. ``["stem_conv_relu", "block2_add"]``.

    Returns:
        per layer name, in the order given, a float32 array (height, width, channels).

    >>> activations(load_model(), "images/coffee.png", "stem_conv_relu")["stem_conv_relu"].shape
    (112, 112, 32)
    """
    names = [layers] if isinstance(layers, str) else list(layers)
    sub = _sub_model(net.model, [_layer(net.model, name).output for name in names])
    outputs = sub(net.preprocess(_model_input(net, load_image(image))), training=False)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return {name: np.asarray(out[0]) for name, out in zip(names, outputs)}


def gradcam(net: Net, image, class_index: int | str | None = None, layer: str | None = None) -> np.ndarray:
    """Grad-CAM: where in the image a convolutional layer sees the class.

    The layer's feature maps weighted by the mean gradient of the class logit,
    summed over channels, negatives dropped (Selvaraju et al. 2017).

    Args:
        net: from ``load_model``, with its classifier (``include_top=True``).
        image: a path, PIL image or array (h, w, 3) 0-255.
        class_index: an index, an ImageNet label such as ``"espresso"``, or None
            for the top predicted class.
        layer: a layer with a (height, width, channels) output; None is
            ``net.last_conv_layer``.

    Returns:
        float32 array (h, w) in 0-1, the size of ``image``.

    >>> gradcam(load_model(), "images/coffee.png", "espresso").shape
    (400, 600)
    """
    pixels = load_image(image)
    layer = layer or net.last_conv_layer
    found = _layer(net.model, layer)
    if len(found.output.shape) != 4:
        raise ValueError(f"Grad-CAM needs a layer with a (height, width, channels) output; "
                         f"{layer!r} gives {tuple(found.output.shape)}. Try {net.last_conv_layer!r}.")
    grad_model = _sub_model(net.model, [found.output, _logits(net.model)])
    x = net.preprocess(_model_input(net, pixels))
    with tf.GradientTape() as tape:
        maps, logits = grad_model(x, training=False)
        target = _resolve_class(logits.shape[-1], class_index, logits[0])
        score = logits[:, target]
    grads = tape.gradient(score, maps)
    cam = GradCAM.generate_ponderated_output(maps, grads)[0].numpy()
    return _to_image(_scaled(np.maximum(cam, 0), cam.max()), pixels)


def occlusion(net: Net, image, class_index: int | str | None = None, patch: int = 48,
              stride: int | None = None, batch_size: int = 32) -> np.ndarray:
    """Occlusion: how much the class probability falls when a grey square hides a region.

    Args:
        net: from ``load_model``, with its classifier.
        image: a path, PIL image or array (h, w, 3) 0-255.
        class_index: an index, an ImageNet label, or None for the top class.
        patch: side of the grey square, in pixels of the model input (``net.input_size``).
        stride: step between squares; None is ``patch // 2``.
        batch_size: occluded images per forward pass.

    Returns:
        float32 array (h, w) in 0-1, the size of ``image``: the mean fall of the
        probability over the squares covering each pixel, scaled so the largest
        fall is 1 (no fall anywhere gives zeros).

    >>> occlusion(load_model(), "images/coffee.png", "espresso", patch=56).shape
    (400, 600)
    """
    pixels = load_image(image)
    height, width = net.input_size
    stride = stride or max(patch // 2, 1)
    if not 0 < stride <= patch <= min(height, width):
        raise ValueError(f"need 0 < stride <= patch <= {min(height, width)} (the model input) so every "
                         f"pixel is covered; got patch={patch}, stride={stride}")
    x = _model_input(net, pixels)[0]
    base = _probabilities(net, net.preprocess(x[None]))[0]
    target = _resolve_class(base.shape[-1], class_index, base)
    corners = [(top, left) for top in _starts(height, patch, stride) for left in _starts(width, patch, stride)]
    occluded = np.stack([apply_grey_patch(x, left, top, patch) for top, left in corners])
    probs = _probabilities(net, net.preprocess(occluded), batch_size)[:, target]
    fall, count = np.zeros((height, width), np.float32), np.zeros((height, width), np.float32)
    for (top, left), p in zip(corners, probs):
        fall[top:top + patch, left:left + patch] += base[target] - p
        count[top:top + patch, left:left + patch] += 1
    fall = np.maximum(fall / count, 0)
    return _to_image(_scaled(fall, fall.max()), pixels)


def smoothgrad(net: Net, image, class_index: int | str | None = None, samples: int = 16,
               noise: float = 0.15, batch_size: int = 16, seed: int = 0) -> np.ndarray:
    """SmoothGrad: the gradient of the class logit, averaged over noisy copies of the image.

    Args:
        net: from ``load_model``, with its classifier.
        image: a path, PIL image or array (h, w, 3) 0-255.
        class_index: an index, an ImageNet label, or None for the top class.
        samples: noisy copies (Smilkov et al. 2017 find 10-50 enough).
        noise: standard deviation of the Gaussian noise as a fraction of 0-255.
        batch_size: copies per backward pass.
        seed: for the noise; the same seed gives the same heatmap.

    Returns:
        float32 array (h, w) in 0-1, the size of ``image``: absolute averaged
        gradient summed over RGB, clipped at its 99th percentile.

    >>> smoothgrad(load_model(), "images/coffee.png", "espresso").shape
    (400, 600)
    """
    pixels = load_image(image)
    x = _model_input(net, pixels)
    rng = np.random.default_rng(seed)
    noisy = x + rng.normal(0.0, noise * 255.0, (samples, *x.shape[1:])).astype(np.float32)
    grads = _gradients(net, noisy, class_index, x, batch_size).mean(axis=0)
    return _to_image(_saliency(np.abs(grads).sum(axis=-1)), pixels)


def integrated_gradients(net: Net, image, class_index: int | str | None = None, steps: int = 32,
                         baseline: float = 0.0, batch_size: int = 16) -> np.ndarray:
    """Integrated gradients: the class logit's gradient summed along a path from a blank image.

    Attribution = (image - baseline) x the mean gradient at ``steps`` points
    along the straight path from the baseline to the image (Sundararajan et al. 2017).

    Args:
        net: from ``load_model``, with its classifier.
        image: a path, PIL image or array (h, w, 3) 0-255.
        class_index: an index, an ImageNet label, or None for the top class.
        steps: points on the path.
        baseline: the blank image's pixel value, 0-255 (0 is black).
        batch_size: path points per backward pass.

    Returns:
        float32 array (h, w) in 0-1, the size of ``image``: absolute attribution
        summed over RGB, clipped at its 99th percentile.

    >>> integrated_gradients(load_model(), "images/coffee.png", "espresso").shape
    (400, 600)
    """
    pixels = load_image(image)
    x = _model_input(net, pixels)
    blank = np.full_like(x[0], baseline)
    # The gradients are taken on the model's input, after preprocessing, so the
    # difference to the baseline is taken there too: the product is then the
    # same as in pixel units, whatever (affine) preprocessing the model uses.
    alphas = (np.arange(steps, dtype=np.float32) + 0.5) / steps  # midpoint rule
    path = blank + alphas[:, None, None, None] * (x - blank)
    grads = _gradients(net, path, class_index, x, batch_size).mean(axis=0)
    attribution = (net.preprocess(x) - net.preprocess(blank[None]))[0] * grads
    return _to_image(_saliency(np.abs(attribution).sum(axis=-1)), pixels)


def overlay(image, heatmap: np.ndarray, alpha: float = 0.4, colormap: str = "jet") -> np.ndarray:
    """Blend a heatmap over an image, for ``PIL.Image.fromarray(...).save("x.png")``.

    Args:
        image: a path, PIL image or array (h, w, 3) 0-255.
        heatmap: float array (h, w) in 0-1, as the explainers return.
        alpha: weight of the heatmap colours, 0 (image only) to 1 (heatmap only).
        colormap: a matplotlib colormap name.

    Returns:
        uint8 array (h, w, 3).

    >>> overlay("images/coffee.png", gradcam(net, "images/coffee.png")).dtype
    dtype('uint8')
    """
    pixels = load_image(image)
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if heatmap.shape != pixels.shape[:2]:
        raise ValueError(f"heatmap of shape {heatmap.shape} does not fit an image of shape {pixels.shape}: "
                         "pass the image the heatmap was computed for")
    colours = colormaps[colormap](np.clip(heatmap, 0, 1))[..., :3] * 255.0
    return np.round((1 - alpha) * pixels + alpha * colours).astype(np.uint8)


def _layer(model: keras.Model, name: str) -> keras.layers.Layer:
    """``model.get_layer(name)``, with an error that says what to do when it cannot be used."""
    _check_built(model)
    try:
        layer = model.get_layer(name)
    except ValueError:
        layer = None
    nested = [inner for inner in model.layers if isinstance(inner, keras.Model)
              and (inner is layer or _contains(inner, name))]
    if nested:
        where = "" if nested[0] is layer else f"is inside {nested[0].name!r}, which "
        raise ValueError(
            f"layer {name!r} {where}is a model nested as one layer of {model.name!r}; "
            f"Keras does not connect its layers to the input of {model.name!r}, so neither Grad-CAM nor "
            f"activations can reach them (occlusion, smoothgrad and integrated_gradients can). Build "
            f"the classifier as one graph on the base model's tensors instead: "
            f"x = GlobalAveragePooling2D()(base.output); keras.Model(base.input, Dense(n, activation='softmax')(x))"
        )
    if layer is None:
        spatial = [layer.name for layer in model.layers
                   if isinstance(layer.output, keras.KerasTensor) and len(layer.output.shape) == 4]
        raise ValueError(f"no layer {name!r} in {model.name!r}; the last layers with a (height, width, "
                         f"channels) output are: {', '.join(spatial[-5:])}")
    return layer


def _check_built(model: keras.Model) -> None:
    if not model.built:
        raise ValueError(f"{model.name!r} has no graph yet: start it with keras.Input((height, width, 3)), "
                         "e.g. keras.Sequential([keras.Input((224, 224, 3)), ...])")


def _contains(model: keras.Model, name: str) -> bool:
    return any(layer.name == name or (isinstance(layer, keras.Model) and _contains(layer, name))
               for layer in model.layers)


def _sub_model(model: keras.Model, outputs: list) -> keras.Model:
    """A model from ``model``'s (single) input to some of its tensors."""
    if len(model.inputs) != 1:
        raise ValueError(f"{model.name!r} has {len(model.inputs)} inputs; explaining needs one image input")
    return keras.Model(model.inputs[0], outputs)


def _logits(model: keras.Model):
    """The model's class scores before its final activation (softmax), as a symbolic tensor."""
    _check_built(model)
    if len(model.outputs) != 1 or len(model.outputs[0].shape) != 2:
        shapes = [tuple(output.shape) for output in model.outputs]
        raise ValueError(f"{model.name!r} outputs {shapes}, not class scores (batch, classes): "
                         "load it with its classifier, load_model(name, include_top=True)")
    last = model.layers[-1]
    if isinstance(last, keras.layers.Dense) and last.activation is not keras.activations.linear:
        # A linear copy of the classifier: the same weights, without the activation.
        linear = keras.layers.Dense(last.units, use_bias=last.use_bias, name=f"{last.name}_logits")
        logits = linear(last.input)
        linear.set_weights(last.get_weights())
        return logits
    if isinstance(last, (keras.layers.Softmax, keras.layers.Activation)):
        return last.input
    return model.outputs[0]


def _resolve_class(classes: int, class_index: int | str | None, scores) -> int:
    """The class index to explain: as given, looked up by label, or the top score."""
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
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else " (see class_index())"
            raise ValueError(f"no ImageNet class labelled {class_index!r}{hint}")
        if len(matches) > 1:
            raise ValueError(f"{class_index!r} labels classes {matches}: pass one of these indices")
        return matches[0]
    if not 0 <= int(class_index) < classes:
        raise ValueError(f"class_index {class_index} is out of range: the model has {classes} classes")
    return int(class_index)


def _model_input(net: Net, pixels: np.ndarray) -> np.ndarray:
    """The whole image squashed to the input size: float32 (1, height, width, 3), 0-255."""
    return load_image(pixels, size=net.input_size, crop=None)[None]


def _probabilities(net: Net, batch: np.ndarray, batch_size: int = 32) -> np.ndarray:
    # Direct calls, not model.predict: no tf.function to retrace for every model and batch shape.
    return np.concatenate([np.asarray(net.model(batch[start:start + batch_size], training=False))
                           for start in range(0, len(batch), batch_size)])


def _gradients(net: Net, images: np.ndarray, class_index, x: np.ndarray, batch_size: int) -> np.ndarray:
    """Gradients of the class logit for 0-255 images (n, h, w, 3), on the preprocessed input.

    ``x`` is the unperturbed image (1, h, w, 3) that picks the top class when
    ``class_index`` is None.
    """
    logit_model = _sub_model(net.model, _logits(net.model))
    top = logit_model(net.preprocess(x), training=False)[0]
    target = _resolve_class(top.shape[-1], class_index, top)
    grads = []
    for start in range(0, len(images), batch_size):
        inputs = tf.convert_to_tensor(net.preprocess(images[start:start + batch_size]))
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            score = logit_model(inputs, training=False)[:, target]
        grads.append(tape.gradient(score, inputs).numpy())
    return np.concatenate(grads)


def _starts(size: int, patch: int, stride: int) -> list[int]:
    """Offsets of patches along one side, the last flush with the edge."""
    starts = list(range(0, size - patch + 1, stride))
    return starts if starts[-1] == size - patch else [*starts, size - patch]


def _scaled(values: np.ndarray, top: float) -> np.ndarray:
    return values / top if top > 0 else np.zeros_like(values)


def _saliency(values: np.ndarray) -> np.ndarray:
    """Scale to 0-1, clipping the brightest 1% that would otherwise flatten the rest."""
    return np.clip(_scaled(values, float(np.percentile(values, 99))), 0, 1)


def _to_image(heatmap: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Resize a 0-1 heatmap (bilinear) to the image's (h, w): float32."""
    height, width = pixels.shape[:2]
    resized = Image.fromarray(np.asarray(heatmap, dtype=np.float32)).resize((width, height), Image.BILINEAR)
    return np.clip(np.asarray(resized, dtype=np.float32), 0, 1)
