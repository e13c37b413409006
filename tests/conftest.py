import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
# Converted LiteRT models: kept between test runs, out of the user's own cache.
os.environ.setdefault("HELPERS_CACHE", str(ROOT / ".pytest_cache" / "litert"))

IMAGES = ROOT / "images"
DEV = ROOT.parent / "shared" / "data" / "imagenet-sample-dev"  # dev data: tests that use it skip without it


def tiny_spec(**changes):
    """The registry record of the tiny model below; ``changes`` replace fields."""
    from dataclasses import replace

    from helpers import ModelSpec
    from helpers.efficientnet_lite import preprocess

    spec = ModelSpec("tiny", 32, preprocess, last_conv_layer="conv1_relu",
                     activation_layers=("conv0_relu", "conv1", "conv1_relu"), fine_tune_from="conv1", feature_width=8)
    return replace(spec, **changes)


@pytest.fixture
def tiny_net():
    """Makes small Nets in the image of the real ones (conv, BatchNorm, ReLU, twice, on a
    32x32 input): ``tiny_net()`` with a 5-class softmax top, ``tiny_net(top=False)``
    headless, ``tiny_net(seed=1)`` with other random weights. Not in the registry."""
    import keras
    from keras import layers

    from helpers import Net

    def make(top: bool = True, seed: int = 0):
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((32, 32, 3), name="image")
        x = inputs
        for i, filters in enumerate([4, 8]):
            x = layers.Conv2D(filters, 3, padding="same", name=f"conv{i}")(x)
            x = layers.BatchNormalization(name=f"conv{i}_bn")(x)
            x = layers.ReLU(name=f"conv{i}_relu")(x)
        if top:
            x = layers.Dense(5, activation="softmax", name="predictions")(layers.GlobalAveragePooling2D()(x))
        return Net(keras.Model(inputs, x, name="tiny"), tiny_spec())

    return make


@pytest.fixture(scope="session")
def lite0():
    from helpers import load_model

    return load_model()


@pytest.fixture(scope="session")
def lite0_headless():
    from helpers import load_model

    return load_model(include_top=False)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """``python -m helpers ARGS`` from the project root, as a user runs it."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "helpers", *args], capture_output=True, text=True, cwd=ROOT, env=env)
