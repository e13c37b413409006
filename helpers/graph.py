"""Reaching inside a Keras model: find a layer (in nested models too), and a model that also
returns a layer's output, or a layer's output and the class scores (what Grad-CAM needs).

Lesson 05 does it in one line, ``keras.Model(model.input, [layer.output, model.output])``.
That line fails for a model nested inside another as one layer (the pretrained base of
``build_classifier``'s models): Keras does not connect the inner layers to the outer input.
``tap_model`` then calls the same layers again (same weights) to connect them.
"""

from __future__ import annotations

import weakref

import keras
import tensorflow as tf

from .models import Net


def is_nested(layer: keras.layers.Layer) -> bool:
    """Whether a layer is itself a Functional or Sequential model, used as one layer of another."""
    return isinstance(layer, keras.Model) and bool(getattr(layer, "inputs", None))


def all_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer in order, each nested model followed by its own layers.

    >>> [layer.name for layer in all_layers(load_model().model)][:3]
    ['image', 'stem_conv', 'stem_conv_bn']
    """
    return [found for layer in model.layers
            for found in ([layer, *all_layers(layer)] if is_nested(layer) else [layer])]


def spatial_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Layers with a (batch, height, width, channels) output larger than 1x1, nested ones
    included, inputs and nested models themselves excluded."""
    return [layer for layer in all_layers(model)
            if not isinstance(layer, keras.layers.InputLayer) and not is_nested(layer)
            and isinstance(layer.output, keras.KerasTensor) and len(layer.output.shape) == 4
            and max(layer.output.shape[1:3]) > 1]


def find_layer(model: keras.Model, name: str) -> keras.layers.Layer:
    """The layer called ``name``, in the model or in a model nested in it.

    >>> find_layer(load_model().model, "head_conv_relu").output.shape
    (None, 7, 7, 1280)
    """
    matches = [layer for layer in all_layers(model) if layer.name == name]
    if not matches:
        spatial = [layer.name for layer in spatial_layers(model)]
        raise ValueError(f"no layer {name!r} in {model.name!r} or the models nested in it; the last layers with "
                         f"a (height, width, channels) output are: {', '.join(spatial[-5:])}")
    return matches[0]


def gradcam_layer(net: Net) -> keras.layers.Layer:
    """The layer Grad-CAM reads: the registry's ``last_conv_layer`` when the model has it,
    else the last layer with a (height, width, channels) output.

    >>> gradcam_layer(load_model()).name
    'head_conv_relu'
    """
    named = [layer for layer in all_layers(net.model) if layer.name == net.spec.last_conv_layer]
    if named:
        return named[0]
    spatial = spatial_layers(net.model)
    if not spatial:
        raise ValueError(f"{net.model.name!r} has no layer with a (height, width, channels) output smaller than the "
                         "image: Grad-CAM needs a convolutional layer")
    return spatial[-1]


# Tap models already built, per model: rebuilding adds nodes to the model's layers each time.
_TAPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def tap_model(model: keras.Model, taps: list[tuple[keras.layers.Layer, str]]) -> keras.Model:
    """A model from ``model``'s input to the tapped tensors, then ``model``'s outputs.

    A tap is ``(layer, "output")`` or ``(layer, "input")``; the layer may sit in a
    nested model. Then the forward pass is rebuilt with the same layers (same
    weights): the nested model is replaced by a copy of itself that also returns the
    tapped tensors. The user's model is not changed.

    >>> model = load_model().model
    >>> maps, probabilities = tap_model(model, [(find_layer(model, "head_conv_relu"), "output")])(
    ...     np.zeros((1, 224, 224, 3)))
    >>> maps.shape, probabilities.shape
    (TensorShape([1, 7, 7, 1280]), TensorShape([1, 1000]))
    """
    key = tuple((id(layer), where) for layer, where in taps)
    cached = _TAPS.setdefault(model, {})
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
    """``tap_model`` for taps inside nested models: the forward pass called again, layer by layer."""
    wanted = {(id(layer), where) for layer, where in taps}
    nested = {}  # id of a nested model -> (its own tap model, the taps it returns first)
    for child in model.layers:
        inside = [(layer, where) for layer, where in taps
                  if is_nested(child) and any(layer is found for found in all_layers(child))]
        if inside:
            nested[id(child)] = (tap_model(child, inside), [(id(layer), where) for layer, where in inside])
    found: dict[tuple[int, str], keras.KerasTensor] = {}

    def call(layer, *args, **kwargs):
        if id(layer) in nested:
            tapped, keys = nested[id(layer)]
            outputs = tapped(*args, **kwargs)
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


class ClassScores:
    """Call a classifier for the feature maps of some layers and the class logits.

    The logits are the scores before the final softmax: a final Dense layer with a
    softmax is applied without it, with its own (current) weights. A model without
    a final softmax is taken to output logits.

    >>> model = load_model().model
    >>> (maps,), logits = ClassScores(model, [find_layer(model, "head_conv_relu")])(np.zeros((1, 224, 224, 3)))
    >>> maps.shape, logits.shape
    (TensorShape([1, 7, 7, 1280]), TensorShape([1, 1000]))
    """

    def __init__(self, model: keras.Model, layers: list[keras.layers.Layer]):
        if len(model.outputs) != 1 or len(model.outputs[0].shape) != 2:
            shapes = [tuple(output.shape) for output in model.outputs]
            raise ValueError(f"{model.name!r} outputs {shapes}, not class scores (batch, classes): "
                             "load it with its classifier, load_model(name, include_top=True)")
        last = model.layers[-1]
        while is_nested(last):
            last = last.layers[-1]
        activated = getattr(last, "activation", keras.activations.linear) is not keras.activations.linear
        self.dense = last if isinstance(last, keras.layers.Dense) and activated else None
        before_softmax = self.dense is not None or isinstance(last, (keras.layers.Softmax, keras.layers.Activation))
        self.count = len(layers)
        self.model = tap_model(model, [(layer, "output") for layer in layers] + [(last, "input")] * before_softmax)

    def __call__(self, x) -> tuple[list, tf.Tensor]:
        """(the layers' maps, logits (batch, classes)) for a preprocessed batch."""
        outputs = self.model(x, training=False)
        maps, logits = list(outputs[:self.count]), outputs[self.count]
        if self.dense is not None:
            logits = tf.matmul(logits, self.dense.kernel)
            logits = logits + self.dense.bias if self.dense.use_bias else logits
        return maps, logits
