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


def test_missing_keras_weights_name_the_file_and_folder(tmp_path):
    import os
    import subprocess
    import sys

    # A closed local port as proxy makes the download fail at once, with or without a network.
    env = dict(os.environ, KERAS_HOME=str(tmp_path), https_proxy="http://127.0.0.1:9",
               HTTPS_PROXY="http://127.0.0.1:9", TF_CPP_MIN_LOG_LEVEL="3")
    code = "from helpers import load_model\nload_model('vgg16', include_top=False)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode != 0
    assert "RuntimeError: could not download the ImageNet weights for 'vgg16'" in run.stderr
    assert f"Put vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 in {tmp_path / 'models'}" in run.stderr


@pytest.mark.parametrize("name, size", [("efficientnet_lite1", 240), ("efficientnet_lite2", 260)])
def test_larger_lite_models_load_offline_and_recognise_coffee(name, size):
    net = load_model(name)
    assert net.input_size == (size, size)
    image = load_image(IMAGES / "coffee.png", size=net.input_size)
    probs = net.model.predict(net.preprocess(image[None]), verbose=0)
    assert decode_predictions(probs, top=1)[0][0][1] == "espresso"


def test_misspelled_weights_are_an_error_not_random_weights():
    with pytest.raises(ValueError, match="weights must be 'imagenet' or None, got 'ImageNet'"):
        load_model(weights="ImageNet")
