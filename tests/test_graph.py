import keras
import numpy as np
import pytest

from helpers import Net
from helpers.graph import ClassScores, all_layers, find_layer, gradcam_layer, is_nested, tap_model
from support import tiny_spec


def _nested(tiny_net):
    """A classifier whose base (the tiny headless model) is one layer of it, as build_classifier makes."""
    base = tiny_net(top=False).model
    image = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(base(image))
    return base, keras.Model(image, keras.layers.Dense(3, activation="softmax", name="classes")(x), name="outer")


def test_layers_of_nested_models_are_found_by_their_own_names(tiny_net):
    base, model = _nested(tiny_net)
    assert is_nested(base) and not is_nested(model.layers[-1])
    names = [layer.name for layer in all_layers(model)]
    assert names.index(base.name) < names.index("conv0") < names.index("conv1_relu") < names.index("classes")
    assert find_layer(model, "conv1_relu") is base.get_layer("conv1_relu")
    with pytest.raises(ValueError, match="no layer 'conv9' in 'outer'.*conv1_relu"):
        find_layer(model, "conv9")


def test_gradcam_layer_is_the_registry_one_or_the_last_spatial_one(tiny_net):
    base, model = _nested(tiny_net)
    assert gradcam_layer(Net(model, tiny_spec(last_conv_layer="conv0_relu"))).name == "conv0_relu"
    assert gradcam_layer(Net(model, tiny_spec(last_conv_layer=None))).name == "conv1_relu"


def test_tap_model_reaches_inside_a_nested_base_with_the_same_weights(tiny_net):
    base, model = _nested(tiny_net)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    maps, probabilities = tap_model(model, [(find_layer(model, "conv1_relu"), "output")])(x)
    inner = keras.Model(base.input, base.get_layer("conv1_relu").output)(x)
    np.testing.assert_allclose(maps, inner, atol=1e-5)
    np.testing.assert_allclose(probabilities, model(x), atol=1e-5)
    assert tap_model(model, [(find_layer(model, "conv1_relu"), "output")]) is tap_model(
        model, [(find_layer(model, "conv1_relu"), "output")])  # built once per model and taps


def test_class_scores_are_the_logits_before_the_softmax(tiny_net):
    _, model = _nested(tiny_net)
    x = np.random.default_rng(1).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    (maps,), logits = ClassScores(model, [find_layer(model, "conv0_relu")])(x)
    assert maps.shape == (2, 32, 32, 4)
    np.testing.assert_allclose(keras.ops.softmax(logits), model(x), atol=1e-5)
    with pytest.raises(ValueError, match="not class scores"):
        ClassScores(tiny_net(top=False).model, [])
