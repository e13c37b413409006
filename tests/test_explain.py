import keras
import numpy as np
import pytest

from helpers import Net, load_model, mosaic
from helpers.explain import activations, gradcam, integrated_gradients, occlusion, overlay, smoothgrad
from conftest import IMAGES, run_cli

# Tiles of the 2x2 mosaic, row by row, and the class each one shows.
TILES = ["chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png"]
CLASSES = ["Egyptian_cat", "espresso", "missile", "moped"]
QUARTERS = [(slice(0, 112), slice(0, 112)), (slice(0, 112), slice(112, 224)),
            (slice(112, 224), slice(0, 112)), (slice(112, 224), slice(112, 224))]

# Small settings: these tests check plumbing and behaviour, not pretty pictures.
EXPLAINERS = {
    "gradcam": lambda net, image, target=None: gradcam(net, image, target),
    "occlusion": lambda net, image, target=None: occlusion(net, image, target, patch=net.input_size[0] // 2),
    "smoothgrad": lambda net, image, target=None: smoothgrad(net, image, target, samples=2),
    "integrated_gradients": lambda net, image, target=None: integrated_gradients(net, image, target, steps=2),
}


@pytest.fixture(scope="module")
def four_tiles():
    return mosaic([IMAGES / name for name in TILES])


def _tile_means(heatmap):
    return np.array([heatmap[rows, cols].mean() for rows, cols in QUARTERS])


def _assert_heatmap(heatmap, shape):
    assert heatmap.shape == shape and heatmap.dtype == np.float32
    assert 0 <= heatmap.min() and heatmap.max() <= 1


@pytest.mark.parametrize("method", EXPLAINERS)
def test_heatmaps_are_the_size_of_the_photo_and_0_1(lite0, method):
    # chelsea.png is 451 x 300: the heatmap comes back at the photo's size, not the model's.
    heatmap = EXPLAINERS[method](lite0, IMAGES / "chelsea.png")
    _assert_heatmap(heatmap, (300, 451))
    assert heatmap.max() > 0.9  # the strongest evidence is near 1 (after resizing)


@pytest.mark.parametrize("name", ["vgg16", "resnet50", "mobilenet_v2"])
def test_keras_registry_models_give_image_sized_heatmaps(name):
    net = load_model(name, weights=None)  # random weights: only the plumbing is checked
    image = np.random.default_rng(0).uniform(0, 255, (150, 200, 3)).astype(np.float32)
    for method in (["gradcam", "smoothgrad"] if name != "mobilenet_v2" else EXPLAINERS):
        _assert_heatmap(EXPLAINERS[method](net, image, 1), (150, 200))


def test_gradcam_pointing_game(lite0, four_tiles):
    for tile, label in enumerate(CLASSES):
        heatmap = gradcam(lite0, four_tiles, label)
        mass = _tile_means(heatmap) / _tile_means(heatmap).sum()
        assert mass[tile] > 0.5, f"{label}: {mass.round(2)}"


def test_occlusion_of_the_tile_gradcam_points_at_lowers_the_score_most(lite0, four_tiles):
    for label in CLASSES:
        pointed = np.argmax(_tile_means(gradcam(lite0, four_tiles, label)))
        # One grey square per tile: each tile's value is how much hiding it lowers the probability.
        fall = _tile_means(occlusion(lite0, four_tiles, label, patch=112, stride=112))
        assert fall[pointed] == 1 and np.delete(fall, pointed).max() < 1, f"{label}: {fall.round(2)}"


def test_class_by_label_or_index_and_top_class_by_default(lite0):
    coffee = IMAGES / "coffee.png"
    np.testing.assert_array_equal(gradcam(lite0, coffee, "espresso"), gradcam(lite0, coffee, 967))
    np.testing.assert_array_equal(gradcam(lite0, coffee), gradcam(lite0, coffee, 967))


@pytest.mark.parametrize("target, message", [
    ("expresso", "did you mean 'espresso'"),
    ("crane", "labels classes [134, 517]"),
    (1000, "out of range: the model has 1000 classes"),
])
def test_bad_class_errors_say_what_to_pass(lite0, target, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        gradcam(lite0, IMAGES / "coffee.png", target)


def test_gradcam_layer_errors_teach(lite0):
    with pytest.raises(ValueError, match="no layer 'conv5' .* head_conv_relu"):
        gradcam(lite0, IMAGES / "coffee.png", layer="conv5")
    with pytest.raises(ValueError, match="'avg_pool' gives \\(None, 1280\\). Try 'head_conv_relu'"):
        gradcam(lite0, IMAGES / "coffee.png", layer="avg_pool")
    with pytest.raises(ValueError, match="include_top=True"):
        gradcam(load_model(include_top=False, weights=None), IMAGES / "coffee.png")


def test_activations_per_layer_in_the_order_asked(lite0):
    maps = activations(lite0, IMAGES / "coffee.png", ["head_conv_relu", "stem_conv_relu"])
    assert list(maps) == ["head_conv_relu", "stem_conv_relu"]
    assert maps["head_conv_relu"].shape == (7, 7, 1280) and maps["stem_conv_relu"].shape == (112, 112, 32)
    assert activations(lite0, IMAGES / "coffee.png", "stem_conv_relu")["stem_conv_relu"].shape == (112, 112, 32)


def _tiny(model):
    return Net("tiny", model, (32, 32), lambda batch: np.asarray(batch, np.float32) / 255.0, "conv")


def _head(x):
    return keras.layers.Dense(5, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))


def test_nested_model_error_says_how_to_rebuild_and_gradient_methods_still_work():
    inputs = keras.Input((32, 32, 3))
    base = keras.Model(inputs, keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inputs), name="base")
    outer = keras.Input((32, 32, 3))
    net = _tiny(keras.Model(outer, _head(base(outer)), name="classifier"))
    image = np.full((40, 50, 3), 100, np.float32)
    with pytest.raises(ValueError, match="inside 'base', which is a model nested .* keras.Model\\(base.input"):
        gradcam(net, image)
    with pytest.raises(ValueError, match="layer 'base' is a model nested"):
        activations(net, image, "base")
    for method in ["occlusion", "smoothgrad", "integrated_gradients"]:
        assert EXPLAINERS[method](net, image).shape == (40, 50)
    # Rebuilt as one graph, as the error suggests, Grad-CAM works.
    assert gradcam(_tiny(keras.Model(base.input, _head(base.output))), image).shape == (40, 50)


def test_sequential_model_works():
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(8, 3, activation="relu", name="conv"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(5, activation="softmax")])
    image = np.random.default_rng(0).uniform(0, 255, (40, 50, 3)).astype(np.float32)
    for method in EXPLAINERS:
        assert EXPLAINERS[method](_tiny(model), image).shape == (40, 50)


def test_overlay_blends_into_uint8_and_checks_the_size():
    image = np.full((20, 30, 3), 200, np.float32)
    heatmap = np.zeros((20, 30), np.float32)
    blended = overlay(image, heatmap, alpha=0.0)
    assert blended.dtype == np.uint8 and blended.shape == (20, 30, 3)
    np.testing.assert_array_equal(blended, 200)
    assert not np.array_equal(overlay(image, heatmap + 1, alpha=0.5), overlay(image, heatmap, alpha=0.5))
    with pytest.raises(ValueError, match="heatmap of shape \\(7, 7\\) does not fit an image of shape \\(20, 30, 3\\)"):
        overlay(image, np.zeros((7, 7)))


def test_model_without_an_input_says_to_start_with_one():
    model = keras.Sequential([keras.layers.Conv2D(8, 3, name="conv"), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(5, activation="softmax")])
    for method in ["gradcam", "smoothgrad"]:
        with pytest.raises(ValueError, match="has no graph yet: start it with keras.Input"):
            EXPLAINERS[method](_tiny(model), np.zeros((40, 50, 3), np.float32))


def test_cli_explain_writes_an_overlay_png(tmp_path):
    from PIL import Image

    out = tmp_path / "coffee_gradcam.png"
    run = run_cli("explain", str(IMAGES / "coffee.png"), "--class", "espresso", "-o", str(out))
    assert run.returncode == 0, run.stderr
    assert "gradcam for 'espresso'" in run.stdout
    assert Image.open(out).size == Image.open(IMAGES / "coffee.png").size
    run = run_cli("explain", str(IMAGES / "coffee.png"), "--class", "expresso", "-o", str(out))
    assert run.returncode == 2 and "did you mean 'espresso'" in run.stderr
