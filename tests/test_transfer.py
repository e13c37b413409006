import re
import warnings
from types import SimpleNamespace

import keras
import numpy as np
import pytest
from keras import layers
from PIL import Image
from sklearn.linear_model import LogisticRegression

from helpers import Net, extract_features, list_images, load_model
from helpers.datasets import TEXTURES, build_texture_dataset, load_labeled_images
from helpers.efficientnet_lite import preprocess as lite_preprocess
from helpers.transfer import base_model, build_classifier, fine_tune, preprocessing_layer

# Chance is 1/3 for the three textures. Measured on the 48 held-out patches: logistic regression 1.00,
# the Keras head after 3 epochs 1.00, after fine-tuning 1.00. A bar of 0.9 leaves room for a run that
# differs a little, and luck cannot reach it: P(>= 44 of 48 right by guessing) is below 1e-15.
ACCURACY_BAR = 0.9


def _save(model, path):
    """``model.save``, without the DeprecationWarning Keras 3.15 gives per TensorFlow variable under numpy 2."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "__array__ implementation doesn't accept a copy keyword", DeprecationWarning)
        model.save(path)


def _corners(folder):
    return [tuple(int(v) for v in re.search(r"_y(\d+)_x(\d+)\.png$", p.name).groups()) for p in list_images(folder)]


def test_texture_dataset_has_class_folders_and_no_pixel_in_both_splits(tmp_path):
    from skimage import data

    train, test = build_texture_dataset(tmp_path / "textures", patch=64, train_per_class=16, test_per_class=16, gap=64)
    assert (train, test) == (tmp_path / "textures" / "train", tmp_path / "textures" / "test")
    for folder in (train, test):
        assert sorted(p.name for p in folder.iterdir()) == sorted(TEXTURES)
    for name in TEXTURES:
        photo = getattr(data, name)()
        for folder in (train, test):
            files = list_images(folder / name)
            assert len(files) == 16
            for path, (y, x) in zip(files, _corners(folder / name)):
                patch = np.asarray(Image.open(path))
                assert patch.shape == (64, 64, 3)
                # the file holds exactly the region its name gives, so regions tell which pixels it shares
                np.testing.assert_array_equal(patch[..., 0], photo[y:y + 64, x:x + 64])
        lowest_train = max(y for y, _ in _corners(train / name)) + 64
        highest_test = min(y for y, _ in _corners(test / name))
        assert highest_test - lowest_train >= 64


def test_texture_dataset_refuses_what_does_not_fit_and_a_used_folder(tmp_path):
    with pytest.raises(ValueError, match="do not fit"):
        build_texture_dataset(tmp_path / "a", patch=128, train_per_class=8, test_per_class=8)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        build_texture_dataset(tmp_path / "b")


def test_load_labeled_images_labels_by_subfolder_and_explains_a_flat_folder(tmp_path):
    train, _ = build_texture_dataset(tmp_path / "textures", train_per_class=2, test_per_class=1)
    loaded = load_labeled_images(train, size=32)
    assert loaded.images.shape == (6, 32, 32, 3) and loaded.images.dtype == np.float32
    assert loaded.class_names == ["brick", "grass", "gravel"]
    assert loaded.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert [p.parent.name for p in loaded.sources] == ["brick", "brick", "grass", "grass", "gravel", "gravel"]
    with pytest.raises(FileNotFoundError, match=r"no class subfolders \(it holds 2 photos directly\)"):
        load_labeled_images(train / "brick", size=32)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        load_labeled_images(tmp_path / "missing", size=32)


@pytest.mark.parametrize("name, layer", [("efficientnet_lite0", "Rescaling"), ("xception", "Rescaling"),
                                         ("densenet121", "Rescaling"), ("resnet50", "Dense")])
def test_preprocessing_layer_equals_net_preprocess_and_reloads(name, layer, tmp_path):
    net = load_model(name, include_top=False, weights=None)
    images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, preprocessing_layer(net)(inputs))
    assert type(model.layers[-1]).__name__ == layer
    np.testing.assert_allclose(model.predict(images, verbose=0), net.preprocess(images), atol=1e-4)
    _save(model, tmp_path / "preprocess.keras")
    reloaded = keras.saving.load_model(tmp_path / "preprocess.keras")
    np.testing.assert_array_equal(reloaded.predict(images, verbose=0), model.predict(images, verbose=0))


def test_preprocessing_that_is_not_one_affine_map_per_pixel_is_refused():
    net = Net("squares", None, (16, 16), lambda batch: (np.asarray(batch) / 255) ** 2, "")
    with pytest.raises(ValueError, match="squares: net.preprocess is not one affine map per pixel"):
        preprocessing_layer(net)


def _tiny_net(top=False):
    """A small base in the image of the real ones: conv, BatchNorm, ReLU, twice."""
    inputs = keras.Input((16, 16, 3), name="image")
    x = inputs
    for i, filters in enumerate([4, 8]):
        x = layers.Conv2D(filters, 3, padding="same", name=f"conv{i}")(x)
        x = layers.BatchNormalization(name=f"conv{i}_bn")(x)
        x = layers.ReLU(name=f"conv{i}_relu")(x)
    if top:
        x = layers.Dense(5, name="predictions")(layers.GlobalAveragePooling2D()(x))
    return Net("tiny", keras.Model(inputs, x, name="tiny"), (16, 16), lite_preprocess, "conv1_relu")


def _tiny_data():
    rng = np.random.default_rng(0)
    labels = np.arange(32) % 2
    images = rng.uniform(0, 255, (32, 16, 16, 3)).astype(np.float32) + 40 * labels[:, None, None, None]
    return images.clip(0, 255), labels


def _weights(model):
    return {w.path: w.numpy().copy() for w in model.weights}


def _changed(before, model):
    return {path for path, value in _weights(model).items() if not np.array_equal(value, before[path])}


def test_fine_tune_trains_only_the_unfrozen_layers_and_never_batchnorm():
    keras.utils.set_random_seed(0)
    net = _tiny_net()
    net_before = _weights(net.model)
    images, labels = _tiny_data()
    model = build_classifier(net, num_classes=2)
    model.fit(images, labels, epochs=2, verbose=0)
    assert _changed(net_before, base_model(model)) == set()
    before = _weights(model)
    fine_tune(model, images, labels, from_layer="conv1", learning_rate=1e-2, epochs=2)
    assert _changed(before, model) == {"conv1/kernel", "conv1/bias", "classes/kernel", "classes/bias"}
    assert _changed(net_before, net.model) == set() and net.model.trainable  # net's own model is not touched


def test_the_batchnorm_check_would_see_an_update():
    # Control for the tests above and below: a base called in training mode with trainable BatchNorm
    # does move its statistics, which build_classifier's training=False and fine_tune prevent.
    keras.utils.set_random_seed(0)
    base = _tiny_net().model
    inputs = keras.Input((16, 16, 3))
    outputs = layers.Dense(2, activation="softmax")(layers.GlobalAveragePooling2D()(base(inputs)))
    model = keras.Model(inputs, outputs)
    model.compile("adam", "sparse_categorical_crossentropy")
    before = _weights(base)
    model.fit(*_tiny_data(), epochs=1, verbose=0)
    assert {"conv0_bn/moving_mean", "conv0_bn/moving_variance"} <= _changed(before, base)


def test_fine_tune_explains_a_bad_from_layer_and_build_classifier_a_model_with_top():
    net = _tiny_net()
    model = build_classifier(net, num_classes=2)
    images, labels = _tiny_data()
    with pytest.raises(ValueError, match="pass from_layer="):
        fine_tune(model, images, labels)
    with pytest.raises(ValueError, match="'conv9' is not a layer of tiny"):
        fine_tune(model, images, labels, from_layer="conv9")
    with pytest.raises(ValueError, match="include_top=False"):
        build_classifier(_tiny_net(top=True), num_classes=2)


@pytest.fixture(scope="module")
def textures(tmp_path_factory, lite0_headless):
    train, test = build_texture_dataset(tmp_path_factory.mktemp("data") / "textures")
    return (load_labeled_images(train, lite0_headless.input_size),
            load_labeled_images(test, lite0_headless.input_size))


@pytest.fixture(scope="module")
def trained(textures, lite0_headless, tmp_path_factory):
    """The notebook's head: 3 epochs on the frozen base, saved to a .keras file."""
    train, test = textures
    keras.utils.set_random_seed(0)
    model = build_classifier(lite0_headless, num_classes=len(train.class_names))
    before = _weights(base_model(model))
    model.fit(train.images, train.labels, epochs=3, batch_size=16, verbose=0)
    path = tmp_path_factory.mktemp("model") / "textures.keras"
    _save(model, path)
    return SimpleNamespace(model=model, before=before, path=path,
                           probabilities=model.predict(test.images, verbose=0))


def test_logistic_regression_on_features_is_clearly_above_chance(textures, lite0_headless):
    train, test = textures
    train_vectors = extract_features(lite0_headless, train.sources).vectors
    test_vectors = extract_features(lite0_headless, test.sources).vectors
    classifier = LogisticRegression(max_iter=1000).fit(train_vectors, train.labels)
    assert classifier.score(test_vectors, test.labels) >= ACCURACY_BAR


def test_keras_head_is_clearly_above_chance(textures, trained):
    _, test = textures
    assert (trained.probabilities.argmax(axis=1) == test.labels).mean() >= ACCURACY_BAR


def test_training_the_head_leaves_the_base_and_its_batchnorm_statistics_unchanged(trained):
    base = base_model(trained.model)
    statistics = {w.path for layer in base.layers if isinstance(layer, layers.BatchNormalization)
                  for w in (layer.moving_mean, layer.moving_variance)}
    assert len(statistics) == 2 * 49 and statistics <= set(trained.before)  # every BatchNorm layer of Lite0
    assert _changed(trained.before, base) == set()


def test_saved_model_reloads_without_custom_objects_and_predicts_the_same(textures, trained):
    _, test = textures
    reloaded = keras.saving.load_model(trained.path)
    np.testing.assert_array_equal(reloaded.predict(test.images, verbose=0), trained.probabilities)


def test_fine_tuning_lite0_trains_its_last_block_and_head_conv_only(textures, trained):
    train, test = textures
    model = keras.saving.load_model(trained.path)  # a copy, so the other tests keep the head-only model
    before = _weights(model)
    fine_tune(model, train.images, train.labels, epochs=1)
    tuned = {"block15_expand/kernel", "block15_dwconv/kernel", "block15_project/kernel", "head_conv/kernel",
             "classes/kernel", "classes/bias"}
    assert {w.path for w in model.trainable_weights} == tuned
    assert _changed(before, model) == tuned
    assert (model.predict(test.images, verbose=0).argmax(axis=1) == test.labels).mean() >= ACCURACY_BAR
