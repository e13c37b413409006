import keras
import numpy as np
import pytest

from helpers import Net, Preprocessing, build_classifier, imagenet_classes, load_image, load_model, mosaic
from helpers.explain import EXPLAINERS, activations, gradcam, occlusion
from support import IMAGES, tiny_spec

# Tiles of the 2x2 mosaic, row by row, and the class each one shows.
TILES = ["chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png"]
CLASSES = ["Egyptian_cat", "espresso", "missile", "moped"]
QUARTERS = [(slice(0, 112), slice(0, 112)), (slice(0, 112), slice(112, 224)),
            (slice(112, 224), slice(0, 112)), (slice(112, 224), slice(112, 224))]



def explain(method, net, image, target=None):
    """``EXPLAINERS[method]`` with small settings: these tests check plumbing and behaviour, not pretty pictures."""
    size = net.input_size[0] if isinstance(net, Net) else net.inputs[0].shape[1]
    small = {"occlusion": {"patch": size // 2}, "smoothgrad": {"samples": 2},
             "integrated_gradients": {"steps": 2}}
    return EXPLAINERS[method](net, image, target, **small.get(method, {}))


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
    heatmap = explain(method, lite0, IMAGES / "chelsea.png")
    _assert_heatmap(heatmap, (300, 451))
    assert heatmap.max() > 0.9  # the strongest evidence is near 1 (after resizing)


@pytest.mark.parametrize("name", ["vgg16", "resnet50", "mobilenet_v2"])
def test_keras_registry_models_give_image_sized_heatmaps(name):
    net = load_model(name, weights=None)  # random weights: only the plumbing is checked
    image = np.random.default_rng(0).uniform(0, 255, (150, 200, 3)).astype(np.float32)
    for method in (["gradcam", "smoothgrad"] if name != "mobilenet_v2" else EXPLAINERS):
        _assert_heatmap(explain(method, net, image, 1), (150, 200))


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
    return Net(model, tiny_spec(preprocessing=Preprocessing(mean=(0, 0, 0), std=(255, 255, 255)), last_conv_layer="conv"))


def _tiny_classifiers(base, wrap):
    """A 5-class head on ``base`` twice: in one graph with it, and with ``base`` nested as one
    layer of a functional (``wrap="functional"``, as transfer learning does) or a Sequential
    model. The head's layers are shared, so both compute the same function."""
    pool, dense = keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(5, activation="softmax")
    flat = keras.Model(base.input, dense(pool(base.output)), name="flat")
    if wrap == "sequential":
        return flat, keras.Sequential([keras.Input((32, 32, 3)), base, pool, dense], name="sequential")
    image = keras.Input((32, 32, 3))
    return flat, keras.Model(image, dense(pool(base(image, training=False))), name="functional")


@pytest.mark.parametrize("wrap", ["functional", "sequential"])
def test_a_nested_base_is_explained_as_if_it_were_one_graph(tiny_net, wrap):
    flat, nested = _tiny_classifiers(tiny_net(top=False).model, wrap)
    image = np.random.default_rng(0).uniform(0, 255, (40, 50, 3)).astype(np.float32)
    # No layer named: the last spatial layer, found inside the nested base.
    np.testing.assert_allclose(gradcam(nested, image, 2), gradcam(flat, image, 2, layer="conv1_relu"), atol=1e-5)
    np.testing.assert_allclose(gradcam(nested, image, 2, layer="conv0_relu"),
                               gradcam(flat, image, 2, layer="conv0_relu"), atol=1e-5)
    inner, outer = activations(nested, image, ["conv0", "conv1_relu"]), activations(flat, image, ["conv0", "conv1_relu"])
    for name in outer:
        np.testing.assert_allclose(inner[name], outer[name], atol=1e-5)
    for method in EXPLAINERS:
        np.testing.assert_allclose(explain(method, nested, image, 3), explain(method, flat, image, 3), atol=1e-5)


def test_gradcam_on_build_classifier_points_at_the_right_photo(lite0, lite0_headless, four_tiles):
    # A new head made of the ImageNet classifier's own weights for the four tiles' classes:
    # the nested base must then see each class in its tile, as the flat ImageNet model does.
    columns = [[label for _, label in imagenet_classes()].index(label) for label in CLASSES]
    model = build_classifier(lite0_headless, len(CLASSES))
    kernel, bias = lite0.model.get_layer("predictions").get_weights()
    model.get_layer("classes").set_weights([kernel[:, columns], bias[columns]])
    x = load_image(four_tiles, size=lite0.input_size, crop_fraction=None)[None]
    expected = lite0.model(lite0.preprocess(x)).numpy()[0, columns]
    np.testing.assert_allclose(model(x).numpy()[0], expected / expected.sum(), atol=1e-4)
    for tile in range(len(CLASSES)):
        heatmap = gradcam(model, four_tiles, tile)
        _assert_heatmap(heatmap, (224, 224))
        mass = _tile_means(heatmap) / _tile_means(heatmap).sum()
        assert mass[tile] > 0.5, f"{CLASSES[tile]}: {mass.round(2)}"


def test_a_plain_registry_model_gets_its_preprocessing(lite0):
    coffee = IMAGES / "coffee.png"
    np.testing.assert_allclose(gradcam(lite0.model, coffee, "espresso"), gradcam(lite0, coffee, "espresso"), atol=1e-5)


def test_what_is_not_a_fixed_size_image_model_is_refused_with_a_reason():
    with pytest.raises(TypeError, match="expected a Net from load_model or a keras.Model, got str"):
        gradcam("efficientnet_lite0", np.zeros((32, 32, 3)))
    inputs = keras.Input((None, None, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(5, activation="softmax")(x))
    with pytest.raises(ValueError, match=r"needs a fixed image size.*keras.Input\(\(height, width, 3\)\)"):
        gradcam(model, np.zeros((32, 32, 3)))


def test_sequential_model_works():
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(8, 3, activation="relu", name="conv"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(5, activation="softmax")])
    image = np.random.default_rng(0).uniform(0, 255, (40, 50, 3)).astype(np.float32)
    for method in EXPLAINERS:
        assert explain(method, _tiny(model), image).shape == (40, 50)


def test_model_without_an_input_says_to_start_with_one():
    model = keras.Sequential([keras.layers.Conv2D(8, 3, name="conv"), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(5, activation="softmax")])
    for method in ["gradcam", "smoothgrad"]:
        with pytest.raises(ValueError, match="has no graph yet: start it with keras.Input"):
            explain(method, _tiny(model), np.zeros((40, 50, 3), np.float32))
