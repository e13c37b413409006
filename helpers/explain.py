"""Why did the model say that? Activations and heatmaps, as plain numpy arrays.

Every function here takes ``net``: a ``Net`` from ``load_model``, or any Keras
image classifier. A plain ``keras.Model`` whose name is in the registry (as
``load_model(...).model``'s are) gets that record's preprocessing; any other is
taken to want 0-255 RGB, as ``build_classifier``'s models do (they carry their
preprocessing as a layer). Models nested as one layer inside another, such as
the pretrained base of ``build_classifier``'s models, are looked into: their
layers can be named, and Grad-CAM finds the last spatial layer by itself.

Every heatmap function takes ``(net, image, class_index=None, ...)`` and returns
a float32 array (h, w) in 0-1 the size of the image as given, 1 where the
evidence for the class is strongest. The model sees the whole image squashed to
its input size (``load_image(..., crop=None)``), so the heatmap stretches back
over every pixel; an image already at the input size maps exactly.

SmoothGrad and integrated gradients follow the class logit, the score before
the softmax, as in their papers; Grad-CAM follows the log-probability (the
logit minus the log-sum-exp of all logits), which subtracts the evidence for
competing classes; occlusion follows the probability, the number the reader sees.
"""

from __future__ import annotations

import difflib
import weakref
from dataclasses import dataclass
from typing import Callable, Union

import keras
import numpy as np
import tensorflow as tf
from PIL import Image
from tf_explain.core.grad_cam import GradCAM
from tf_explain.utils.image import apply_grey_patch

from .images import ImageSource, load_image
from .labels import imagenet_classes
from .models import MODELS, Net

# What the explainers accept as the model to explain.
Explainable = Union[Net, keras.Model]


def activations(net: Explainable, image: ImageSource, layers: str | list[str]) -> dict[str, np.ndarray]:
    """The feature maps of some layers for one image.

    Args:
        net: a ``Net`` from ``load_model`` or a ``keras.Model`` (see the module docstring).
        image: a path, PIL image or array (h, w, 3) 0-255; squashed to the model's input size.
        layers: a layer name or a list of them, e.g. ``["stem_conv_relu", "block2_add"]``;
            layers of a nested model by their own names.

    Returns:
        per layer name, in the order given, a float32 array (height, width, channels).

    >>> activations(load_model(), "images/coffee.png", "stem_conv_relu")["stem_conv_relu"].shape
    (112, 112, 32)
    """
    setup = _setup(net)
    names = [layers] if isinstance(layers, str) else list(layers)
    probe = _probe(setup.model, [(_find_layer(setup.model, name), "output") for name in names])
    outputs = probe(setup.preprocess(_model_input(setup, load_image(image))), training=False)
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
    >>> gradcam(build_classifier(load_model(include_top=False), 3), "images/brick.png", 0).shape
    (512, 512)
    """
    setup = _setup(net)
    pixels = load_image(image)
    found = _find_layer(setup.model, layer) if layer else _default_layer(setup)
    shape = tuple(found.output.shape)
    if len(shape) != 4:
        raise ValueError(f"Grad-CAM needs a layer with a (height, width, channels) output; {found.name!r} "
                         f"gives {shape}. Try {_last_spatial_layer(setup.model).name!r}.")
    scores = _Scores(setup.model, [found])
    x = setup.preprocess(_model_input(setup, pixels))
    with tf.GradientTape() as tape:
        (maps,), logits = scores(x)
        target = _resolve_class(logits.shape[-1], class_index, logits[0])
        score = tf.nn.log_softmax(logits)[:, target]
    grads = tape.gradient(score, maps)
    cam = GradCAM.generate_ponderated_output(maps, grads)[0].numpy()
    return _to_image(_scaled(np.maximum(cam, 0), cam.max()), pixels)


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
    setup = _setup(net)
    pixels = load_image(image)
    height, width = setup.input_size
    stride = stride or max(patch // 2, 1)
    if not 0 < stride <= patch <= min(height, width):
        raise ValueError(f"need 0 < stride <= patch <= {min(height, width)} (the model input) so every "
                         f"pixel is covered; got patch={patch}, stride={stride}")
    x = _model_input(setup, pixels)[0]
    base = _probabilities(setup, x[None])[0]
    target = _resolve_class(base.shape[-1], class_index, base)
    corners = [(top, left) for top in _starts(height, patch, stride) for left in _starts(width, patch, stride)]
    occluded = np.stack([apply_grey_patch(x, left, top, patch) for top, left in corners])
    probs = _probabilities(setup, occluded, batch_size)[:, target]
    fall, count = np.zeros((height, width), np.float32), np.zeros((height, width), np.float32)
    for (top, left), p in zip(corners, probs):
        fall[top:top + patch, left:left + patch] += base[target] - p
        count[top:top + patch, left:left + patch] += 1
    fall = np.maximum(fall / count, 0)
    return _to_image(_scaled(fall, fall.max()), pixels)


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

    >>> smoothgrad(load_model(), "images/coffee.png", "espresso").shape
    (400, 600)
    """
    setup = _setup(net)
    pixels = load_image(image)
    x = _model_input(setup, pixels)
    rng = np.random.default_rng(seed)
    noisy = x + rng.normal(0.0, noise * 255.0, (samples, *x.shape[1:])).astype(np.float32)
    grads = _gradients(setup, noisy, class_index, x, batch_size).mean(axis=0)
    return _to_image(_saliency(np.abs(grads).sum(axis=-1)), pixels)


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

    >>> integrated_gradients(load_model(), "images/coffee.png", "espresso").shape
    (400, 600)
    """
    setup = _setup(net)
    pixels = load_image(image)
    x = _model_input(setup, pixels)
    blank = np.full_like(x[0], baseline)
    # The gradients are taken on the model's input, after preprocessing, so the
    # difference to the baseline is taken there too: the product is then the
    # same as in pixel units, whatever (affine) preprocessing the model uses.
    alphas = (np.arange(steps, dtype=np.float32) + 0.5) / steps  # midpoint rule
    path = blank + alphas[:, None, None, None] * (x - blank)
    grads = _gradients(setup, path, class_index, x, batch_size).mean(axis=0)
    attribution = (setup.preprocess(x) - setup.preprocess(blank[None]))[0] * grads
    return _to_image(_saliency(np.abs(attribution).sum(axis=-1)), pixels)


# The heatmap methods by name, as the command line's --method and the tests use them.
EXPLAINERS: dict[str, Callable[..., np.ndarray]] = {
    "gradcam": gradcam, "occlusion": occlusion, "smoothgrad": smoothgrad, "integrated_gradients": integrated_gradients,
}


def _probabilities(setup: _Setup, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Class probabilities (n, classes) for 0-255 images (n, h, w, 3) already at the input size."""
    # Direct calls, not model.predict: no tf.function to retrace for every model and batch shape.
    return np.concatenate([np.asarray(setup.model(setup.preprocess(images[start:start + batch_size]),
                                                  training=False))
                           for start in range(0, len(images), batch_size)])


@dataclass(frozen=True)
class _Setup:
    """What explaining needs to know about a model, whichever way it was given."""

    model: keras.Model
    input_size: tuple[int, int]
    preprocess: Callable[[np.ndarray], np.ndarray]
    gradcam_layer: str | None  # the registry's choice, None to find the last spatial layer


def _setup(net: Explainable) -> _Setup:
    if isinstance(net, Net):
        _check_built(net.model)
        return _Setup(net.model, net.input_size, net.preprocess, net.spec.last_conv_layer)
    if not isinstance(net, keras.Model):
        raise TypeError(f"expected a Net from load_model or a keras.Model, got {type(net).__name__}")
    _check_built(net)
    if len(net.inputs) != 1:
        raise ValueError(f"{net.name!r} has {len(net.inputs)} inputs; explaining needs one image input")
    shape = tuple(net.inputs[0].shape)
    if len(shape) != 4 or shape[-1] != 3 or None in shape[1:3]:
        raise ValueError(f"{net.name!r} takes input of shape {shape}; explaining needs a fixed image size, "
                         "(batch, height, width, 3): start the model with keras.Input((height, width, 3))")
    spec = MODELS.get(net.name)
    if spec is not None and shape[1:3] == (spec.input_size, spec.input_size):
        # load_model(...).model: its registry record says how to preprocess.
        return _Setup(net, shape[1:3], spec.preprocess, spec.last_conv_layer)
    return _Setup(net, shape[1:3], _as_float32, None)


def _as_float32(batch: np.ndarray) -> np.ndarray:
    """The preprocessing of a model that carries its own: none, 0-255 as float32."""
    return np.asarray(batch, dtype=np.float32)


def _check_built(model: keras.Model) -> None:
    if not model.built or not getattr(model, "inputs", None):
        raise ValueError(f"{model.name!r} has no graph yet: start it with keras.Input((height, width, 3)), "
                         "e.g. keras.Sequential([keras.Input((224, 224, 3)), ...])")


def _is_nested(layer: keras.layers.Layer) -> bool:
    """A Functional or Sequential model used as one layer of another."""
    return isinstance(layer, keras.Model) and bool(getattr(layer, "inputs", None))


def _all_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer in order, each nested model followed by its own layers."""
    return [found for layer in model.layers
            for found in ([layer, *_all_layers(layer)] if _is_nested(layer) else [layer])]


def _find_layer(model: keras.Model, name: str) -> keras.layers.Layer:
    """The layer called ``name``, in the model or in a model nested in it."""
    matches = [layer for layer in _all_layers(model) if layer.name == name]
    if not matches:
        spatial = [layer.name for layer in _spatial_layers(model)]
        raise ValueError(f"no layer {name!r} in {model.name!r} or the models nested in it; the last layers with "
                         f"a (height, width, channels) output are: {', '.join(spatial[-5:])}")
    return matches[0]


def _spatial_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Layers with a (batch, height, width, channels) output larger than 1x1, nested ones
    included, inputs and nested models themselves excluded."""
    return [layer for layer in _all_layers(model)
            if not isinstance(layer, keras.layers.InputLayer) and not _is_nested(layer)
            and isinstance(layer.output, keras.KerasTensor) and len(layer.output.shape) == 4
            and max(layer.output.shape[1:3]) > 1]


def _last_spatial_layer(model: keras.Model) -> keras.layers.Layer:
    spatial = _spatial_layers(model)
    if not spatial:
        raise ValueError(f"{model.name!r} has no layer with a (height, width, channels) output smaller than the "
                         "image: Grad-CAM needs a convolutional layer")
    return spatial[-1]


def _default_layer(setup: _Setup) -> keras.layers.Layer:
    """The registry's Grad-CAM layer when the model has it, else the last spatial layer."""
    named = [layer for layer in _all_layers(setup.model) if layer.name == setup.gradcam_layer]
    return named[0] if named else _last_spatial_layer(setup.model)


# Probe models already built, per model: rebuilding adds nodes to the model's layers each time.
_PROBES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _probe(model: keras.Model, taps: list[tuple[keras.layers.Layer, str]]) -> keras.Model:
    """A model from ``model``'s input to the tapped tensors, then ``model``'s outputs.

    A tap is ``(layer, "output")`` or ``(layer, "input")``; the layer may sit in a
    nested model, whose layers Keras does not connect to the outer input. Then
    the forward pass is rebuilt with the same layers (same weights): the nested
    model is replaced by a copy of itself that also returns the tapped tensors.
    The user's model is not changed.
    """
    key = tuple((id(layer), where) for layer, where in taps)
    cached = _PROBES.setdefault(model, {})
    if key not in cached:
        direct = {id(layer) for layer in model.layers}
        try:
            if not all(id(layer) in direct for layer, _ in taps):
                raise ValueError("a tap inside a nested model")
            # A layer's .input and .output are those of its first call, which may belong
            # to another model that shares it: then they are not connected to this input.
            tensors = [getattr(layer, where) for layer, where in taps]
            cached[key] = keras.Model(model.inputs[0], [*tensors, *model.outputs])
        except ValueError:
            cached[key] = _rebuilt(model, taps)
    return cached[key]


def _rebuilt(model: keras.Model, taps: list[tuple[keras.layers.Layer, str]]) -> keras.Model:
    """``_probe`` for taps inside nested models: the forward pass called again, layer by layer."""
    wanted = {(id(layer), where) for layer, where in taps}
    nested = {}  # id of a nested model -> (its own probe, the taps it returns first)
    for child in model.layers:
        inside = [(layer, where) for layer, where in taps if _is_nested(child) and _inside(layer, child)]
        if inside:
            nested[id(child)] = (_probe(child, inside), [(id(layer), where) for layer, where in inside])
    found: dict[tuple[int, str], keras.KerasTensor] = {}

    def call(layer, *args, **kwargs):
        if id(layer) in nested:
            probe, keys = nested[id(layer)]
            outputs = probe(*args, **kwargs)
            found.update(zip(keys, outputs))
            rest = outputs[len(keys):]
            return rest[0] if len(rest) == 1 else rest
        if (id(layer), "input") in wanted:
            found[(id(layer), "input")] = args[0]
        found[(id(layer), "output")] = output = layer(*args, **kwargs)
        return output

    image = keras.Input(batch_shape=model.inputs[0].shape, dtype=model.inputs[0].dtype)
    if isinstance(model, keras.Sequential):  # clone_model takes no call_function for these: a chain
        outputs = image
        for layer in model.layers:
            outputs = call(layer, outputs)
        outputs = [outputs]
    else:
        inputs = [image] if isinstance(model.input, (list, tuple)) else image
        outputs = keras.models.clone_model(model, input_tensors=inputs, clone_function=lambda layer: layer,
                                           call_function=call).outputs
    return keras.Model(image, [*(found[(id(layer), where)] for layer, where in taps), *outputs])


def _inside(layer: keras.layers.Layer, model: keras.Model) -> bool:
    return any(layer is found for found in _all_layers(model))


class _Scores:
    """Call a classifier for the feature maps of some layers and the class logits.

    The logits are the input of the final softmax: a final Dense layer with a
    softmax is applied without it, with its own (current) weights. A model
    without a final softmax is taken to output logits.
    """

    def __init__(self, model: keras.Model, layers: list[keras.layers.Layer]):
        if len(model.outputs) != 1 or len(model.outputs[0].shape) != 2:
            shapes = [tuple(output.shape) for output in model.outputs]
            raise ValueError(f"{model.name!r} outputs {shapes}, not class scores (batch, classes): "
                             "load it with its classifier, load_model(name, include_top=True)")
        last = model.layers[-1]
        while _is_nested(last):
            last = last.layers[-1]
        activated = getattr(last, "activation", keras.activations.linear) is not keras.activations.linear
        self.dense = last if isinstance(last, keras.layers.Dense) and activated else None
        before_softmax = self.dense is not None or isinstance(last, (keras.layers.Softmax, keras.layers.Activation))
        self.count = len(layers)
        self.probe = _probe(model, [(layer, "output") for layer in layers] + [(last, "input")] * before_softmax)

    def __call__(self, x) -> tuple[list, tf.Tensor]:
        """(the layers' maps, logits (batch, classes)) for a preprocessed batch."""
        outputs = self.probe(x, training=False)
        maps, logits = list(outputs[:self.count]), outputs[self.count]
        if self.dense is not None:
            logits = tf.matmul(logits, self.dense.kernel)
            logits = logits + self.dense.bias if self.dense.use_bias else logits
        return maps, logits


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
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else " (see imagenet_classes())"
            raise ValueError(f"no ImageNet class labelled {class_index!r}{hint}")
        if len(matches) > 1:
            raise ValueError(f"{class_index!r} labels classes {matches}: pass one of these indices")
        return matches[0]
    if not 0 <= int(class_index) < classes:
        raise ValueError(f"class_index {class_index} is out of range: the model has {classes} classes")
    return int(class_index)


def _model_input(setup: _Setup, pixels: np.ndarray) -> np.ndarray:
    """The whole image squashed to the input size: float32 (1, height, width, 3), 0-255."""
    return load_image(pixels, size=setup.input_size, crop=None)[None]


def _gradients(setup: _Setup, images: np.ndarray, class_index, x: np.ndarray, batch_size: int) -> np.ndarray:
    """Gradients of the class logit for 0-255 images (n, h, w, 3), on the preprocessed input.

    ``x`` is the unperturbed image (1, h, w, 3) that picks the top class when
    ``class_index`` is None.
    """
    scores = _Scores(setup.model, [])
    top = scores(setup.preprocess(x))[1][0]
    target = _resolve_class(top.shape[-1], class_index, top)
    grads = []
    for start in range(0, len(images), batch_size):
        inputs = tf.convert_to_tensor(setup.preprocess(images[start:start + batch_size]))
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            score = scores(inputs)[1][:, target]
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
