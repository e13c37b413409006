import numpy as np
import pytest

from helpers import available_models, decode_predictions, load_image, load_model
from conftest import IMAGES


def _top(net, name, crop="center", k=5):
    batch = load_image(IMAGES / name, size=net.input_size, crop=crop)[None]
    return [label for _, label, _ in decode_predictions(net.model.predict(net.preprocess(batch), verbose=0), top=k)[0]]


def test_lite0_recognises_real_photos(lite0):
    assert _top(lite0, "chelsea.png")[0] in {"tabby", "tiger_cat", "Egyptian_cat"}
    assert _top(lite0, "coffee.png")[0] == "espresso"
    assert "military_uniform" in _top(lite0, "grace_hopper.jpg", k=3)


def test_lite0_headless_and_last_conv_layer():
    net = load_model(include_top=False, weights=None)
    out = net.model.predict(np.zeros((1, 224, 224, 3), np.float32), verbose=0)
    assert out.shape == (1, 7, 7, 1280)
    assert net.model.get_layer(net.last_conv_layer).output.shape[-1] == 1280


@pytest.mark.parametrize("name, size, shape", [
    ("vgg16", 224, (1, 7, 7, 512)),
    ("xception", 299, (1, 10, 10, 2048)),
    ("resnet50", 224, (1, 7, 7, 2048)),
])
def test_keras_architectures_headless_shapes(name, size, shape):
    net = load_model(name, include_top=False, weights=None)
    assert net.input_size == (size, size)
    assert net.model.predict(np.zeros((1, size, size, 3), np.float32), verbose=0).shape == shape
    net.model.get_layer(net.last_conv_layer)


def test_unknown_model_lists_the_available_ones():
    with pytest.raises(ValueError) as e:
        load_model("alexnet")
    for name in available_models():
        assert name in str(e.value)
