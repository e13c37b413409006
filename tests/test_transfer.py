import warnings
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest
from keras import layers
from sklearn.linear_model import LogisticRegression

from helpers import available_models, extract_features, model_spec
from helpers.datasets import load_labeled_images
from helpers.transfer import base_model, build_classifier, fine_tune, preprocessing_layer, train_head
from support import architecture, check_models

FASHION_TOPS = Path(__file__).parents[1] / "images" / "fashion_tops"
# Chance is 1/3 for the three tops. Measured on the 120 test photos with Lite0 (notebook 06): logistic
# regression 0.89, the head 0.86, after fine-tuning 0.84. A bar of 0.75 leaves room for a run that differs
# a little, and luck cannot reach it: P(>= 90 of 120 right by guessing) is below 1e-20.
ACCURACY_BAR = 0.75


def _save(model, path):
    """``model.save``, without the DeprecationWarning Keras 3.15 gives per TensorFlow variable under numpy 2."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "__array__ implementation doesn't accept a copy keyword", DeprecationWarning)
        model.save(path)


def _reload(path):
    """``keras.saving.load_model``, failing on its warnings, such as "Skipping variable loading for optimizer"."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        return keras.saving.load_model(path)


@pytest.mark.parametrize("name, layer", [("efficientnet_lite0", "Rescaling"), ("xception", "Rescaling"),
                                         ("densenet121", "Rescaling"), ("resnet50", "Dense")])
def test_preprocessing_layer_equals_net_preprocess_and_reloads(name, layer, tmp_path):
    net = architecture(name)
    images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, preprocessing_layer(net)(inputs))
    assert type(model.layers[-1]).__name__ == layer
    np.testing.assert_allclose(model.predict(images, verbose=0), net.preprocess(images), atol=1e-4)
    _save(model, tmp_path / "preprocess.keras")
    reloaded = keras.saving.load_model(tmp_path / "preprocess.keras")
    np.testing.assert_array_equal(reloaded.predict(images, verbose=0), model.predict(images, verbose=0))


def _tiny_data():
    rng = np.random.default_rng(0)
    labels = np.arange(32) % 2
    images = rng.uniform(0, 255, (32, 32, 32, 3)).astype(np.float32) + 40 * labels[:, None, None, None]
    return images.clip(0, 255), labels


def _weights(model):
    return {w.path: w.numpy().copy() for w in model.weights}


def _changed(before, model):
    return {path for path, value in _weights(model).items() if not np.array_equal(value, before[path])}


def test_fine_tune_trains_only_the_unfrozen_layers_and_never_batchnorm(tiny_net):
    keras.utils.set_random_seed(0)
    net = tiny_net(top=False)
    net_before = _weights(net.model)
    images, labels = _tiny_data()
    model = build_classifier(net, num_classes=2)
    model.fit(images, labels, epochs=2, verbose=0)
    assert _changed(net_before, base_model(model)) == set()
    before = _weights(model)
    fine_tune(model, images, labels, from_layer="conv1", learning_rate=1e-2, epochs=2)
    assert _changed(before, model) == {"conv1/kernel", "conv1/bias", "classes/kernel", "classes/bias"}
    assert _changed(net_before, net.model) == set() and net.model.trainable  # net's own model is not touched


@pytest.mark.parametrize("rates, still", [((0.0, 1e-2), {"conv1/kernel", "conv1/bias"}),
                                          ((1e-2, 0.0), {"classes/kernel", "classes/bias"})])
def test_fine_tune_moves_base_and_head_at_their_own_learning_rates(tiny_net, rates, still):
    keras.utils.set_random_seed(0)
    images, labels = _tiny_data()
    model = build_classifier(tiny_net(top=False), num_classes=2)
    before = _weights(model)
    learning_rate, head_learning_rate = rates
    fine_tune(model, images, labels, from_layer="conv1", learning_rate=learning_rate,
              head_learning_rate=head_learning_rate, epochs=2)
    moved = {"conv1/kernel", "conv1/bias", "classes/kernel", "classes/bias"} - still
    assert _changed(before, model) == moved  # a rate of 0 keeps its part where it was


def test_train_head_stops_early_keeps_its_best_epoch_and_trains_the_head_only(tiny_net):
    keras.utils.set_random_seed(0)
    images, labels = _tiny_data()
    model = build_classifier(tiny_net(top=False), num_classes=2)
    before = _weights(model)
    history = train_head(model, images[:24], labels[:24], (images[24:], labels[24:]), learning_rate=0.1,
                         epochs=500, patience=3)
    val_loss = history.history["val_loss"]
    assert len(val_loss) < 500 and int(np.argmin(val_loss)) == len(val_loss) - 4  # 3 epochs without a new best
    assert _changed(before, model) == {"classes/kernel", "classes/bias"}
    loss, _ = model.evaluate(images[24:], labels[24:], verbose=0)
    assert loss == pytest.approx(min(val_loss), rel=1e-4)  # the best epoch's weights, restored


def test_the_batchnorm_check_would_see_an_update(tiny_net):
    # Control for the tests above and below: a base called in training mode with trainable BatchNorm
    # does move its statistics, which build_classifier's training=False and fine_tune prevent.
    keras.utils.set_random_seed(0)
    base = tiny_net(top=False).model
    inputs = keras.Input((32, 32, 3))
    outputs = layers.Dense(2, activation="softmax")(layers.GlobalAveragePooling2D()(base(inputs)))
    model = keras.Model(inputs, outputs)
    model.compile("adam", "sparse_categorical_crossentropy")
    before = _weights(base)
    model.fit(*_tiny_data(), epochs=1, verbose=0)
    assert {"conv0_bn/moving_mean", "conv0_bn/moving_variance"} <= _changed(before, base)


def test_fine_tune_explains_a_bad_from_layer_and_build_classifier_a_model_with_top(tiny_net):
    net = tiny_net(top=False)
    model = build_classifier(net, num_classes=2)
    images, labels = _tiny_data()
    with pytest.raises(ValueError, match="pass from_layer="):
        fine_tune(model, images, labels)
    with pytest.raises(ValueError, match="'conv9' is not a layer of tiny"):
        fine_tune(model, images, labels, from_layer="conv9")
    with pytest.raises(ValueError, match="include_top=False"):
        build_classifier(tiny_net(top=True), num_classes=2)


@pytest.fixture(scope="module")
def tops(lite0_headless):
    return SimpleNamespace(**{split: load_labeled_images(FASHION_TOPS / split, lite0_headless.input_size)
                              for split in ("train", "val", "test")})


@pytest.fixture(scope="module")
def trained(tops, lite0_headless, tmp_path_factory):
    """The notebook's head: trained on the frozen base with early stopping, saved to a .keras file."""
    keras.utils.set_random_seed(0)
    model = build_classifier(lite0_headless, num_classes=len(tops.train.class_names))
    before = _weights(base_model(model))
    history = train_head(model, tops.train.images, tops.train.labels, (tops.val.images, tops.val.labels))
    path = tmp_path_factory.mktemp("model") / "tops.keras"
    _save(model, path)
    return SimpleNamespace(model=model, before=before, path=path, history=history,
                           probabilities=model.predict(tops.test.images, verbose=0))


def test_logistic_regression_on_features_is_clearly_above_chance(tops, lite0_headless):
    # On the engine: the same model converted to LiteRT, equal to about 1e-3, twice as fast.
    train_vectors = extract_features(lite0_headless, tops.train.sources, backend="fastest").vectors
    test_vectors = extract_features(lite0_headless, tops.test.sources, backend="fastest").vectors
    classifier = LogisticRegression(max_iter=1000).fit(train_vectors, tops.train.labels)
    assert classifier.score(test_vectors, tops.test.labels) >= ACCURACY_BAR


def test_keras_head_stops_early_and_is_clearly_above_chance(tops, trained):
    assert len(trained.history.history["val_loss"]) < 200  # stopped by the validation loss, not the epoch limit
    assert (trained.probabilities.argmax(axis=1) == tops.test.labels).mean() >= ACCURACY_BAR


def test_training_the_head_leaves_the_base_and_its_batchnorm_statistics_unchanged(trained):
    base = base_model(trained.model)
    statistics = {w.path for layer in base.layers if isinstance(layer, layers.BatchNormalization)
                  for w in (layer.moving_mean, layer.moving_variance)}
    batchnorms = sum(isinstance(layer, layers.BatchNormalization) for layer in base.layers)
    assert batchnorms > 0 and len(statistics) == 2 * batchnorms and statistics <= set(trained.before)
    assert _changed(trained.before, base) == set()


def test_saved_model_reloads_without_custom_objects_and_predicts_the_same(tops, trained):
    reloaded = _reload(trained.path)
    batch = slice(0, 16)  # one batch: the same weights give the same numbers on any photos
    np.testing.assert_array_equal(reloaded.predict(tops.test.images[batch], verbose=0),
                                  trained.probabilities[batch])


def test_fine_tuning_lite0_trains_its_last_block_and_head_conv_only_and_reloads(tops, trained, tmp_path):
    model = keras.saving.load_model(trained.path)  # a copy, so the other tests keep the head-only model
    before = _weights(model)
    # Two epochs on a third of the photos (every class): enough to move every unfrozen weight; early
    # stopping is train_head's test above.
    fine_tune(model, tops.train.images[::3], tops.train.labels[::3],
              validation_data=(tops.val.images, tops.val.labels), epochs=2)
    tuned = {"block15_expand/kernel", "block15_dwconv/kernel", "block15_project/kernel", "head_conv/kernel",
             "classes/kernel", "classes/bias"}
    assert {w.path for w in model.trainable_weights} == tuned
    assert _changed(before, model) == tuned
    probabilities = model.predict(tops.test.images, verbose=0)
    assert (probabilities.argmax(axis=1) == tops.test.labels).mean() >= ACCURACY_BAR
    _save(model, tmp_path / "tuned.keras")
    reloaded = _reload(tmp_path / "tuned.keras")
    np.testing.assert_array_equal(reloaded.predict(tops.test.images[:16], verbose=0), probabilities[:16])


# make test fine-tunes Lite0 and InceptionV3 (four tensors cross its cut); check-models every other model.
@pytest.mark.parametrize("name", [name if name in ("efficientnet_lite0", "inception_v3")
                                  else pytest.param(name, marks=check_models) for name in available_models()])
def test_fine_tune_defaults_to_the_registry_layer_for_every_model(name):
    net = architecture(name)  # the architecture only: offline; build_classifier copies it
    model = build_classifier(net, num_classes=2)
    size = net.input_size[0]
    fine_tune(model, np.zeros((2, size, size, 3), np.float32), np.array([0, 1]), epochs=1, batch_size=2)
    names = [layer.name for layer in base_model(model).layers]
    trained = [layer.name for layer in base_model(model).layers if layer.trainable_weights]
    first = names.index(model_spec(name).fine_tune_from)
    assert trained and min(names.index(layer) for layer in trained) >= first, trained[:3]


def test_fine_tune_with_validation_data_across_a_cut_of_two_tensors():
    # Two tensors cross the cut, as four do in InceptionV3's last block: they must reach the top apart,
    # in training and in the validation batches alike.
    from helpers import Net
    from support import tiny_spec

    inputs = keras.Input((32, 32, 3), name="image")
    early = layers.Conv2D(4, 3, padding="same", name="early")(inputs)
    later = layers.Conv2D(4, 3, padding="same", name="later")(early)
    joined = layers.Concatenate(name="join")([early, later])
    top = layers.Conv2D(8, 1, name="top")(joined)
    net = Net(keras.Model(inputs, top, name="branching"), tiny_spec(name="branching"))
    model = build_classifier(net, num_classes=2)
    images = np.random.default_rng(0).uniform(0, 255, (6, 32, 32, 3)).astype(np.float32)
    labels = np.array([0, 1] * 3)
    history = fine_tune(model, images, labels, from_layer="join", epochs=2, batch_size=2,
                        validation_data=(images, labels))
    assert len(history.history["val_loss"]) == 2 and np.isfinite(history.history["val_loss"]).all()
    assert {w.path for w in model.trainable_weights} == {"top/kernel", "top/bias", "classes/kernel", "classes/bias"}
