import sys

import keras
import numpy as np
import pytest

from helpers import DEFAULT_MODEL, Preprocessing, available_models, load_model, model_spec
from helpers.models import PROGRESS_FROM, predict_batches, progress_bar
from support import architecture


@pytest.mark.parametrize("name", available_models())
def test_every_registry_record_names_layers_that_exist(name):
    spec = model_spec(name)
    net = architecture(name)  # the architecture only: offline
    size = spec.input_size
    assert net.spec is spec and net.name == net.model.name == name
    assert net.input_size == size and tuple(net.model.input_shape) == (None, *size, 3)
    assert net.model.output_shape[-1] == spec.feature_width and len(net.model.output_shape) == 4
    # Grad-CAM's layer and the lesson's three layers give (height, width, channels) maps, coarser with depth.
    assert len(net.model.get_layer(spec.last_conv_layer).output.shape) == 4
    sides = [net.model.get_layer(layer).output.shape[1] for layer in spec.activation_layers]
    assert all(len(net.model.get_layer(layer).output.shape) == 4 for layer in spec.activation_layers)
    assert sides[0] > sides[2] and sides == sorted(sides, reverse=True), sides
    # Fine-tuning starts inside the model's last quarter: its top, not most of it.
    names = [layer.name for layer in net.model.layers]
    assert names.index(spec.fine_tune_from) >= 0.75 * len(names)
    x = net.preprocess(np.full((1, *size, 3), 255, np.float32))
    assert x.shape == (1, *size, 3) and np.isfinite(x).all()
    assert spec.near_duplicate_threshold is None or 0.5 < spec.near_duplicate_threshold < 1
    assert spec.offline == name.startswith("efficientnet_lite")


@pytest.mark.parametrize("name", [name for name in available_models() if not model_spec(name).offline])
def test_the_registry_preprocessing_is_what_keras_does(name):
    module = {"resnet50": "resnet50", "vgg16": "vgg16", "vgg19": "vgg19", "xception": "xception",
              "inception_v3": "inception_v3", "mobilenet_v2": "mobilenet_v2", "efficientnet_b0": "efficientnet",
              "densenet121": "densenet"}[name]
    photos = np.random.default_rng(0).uniform(0, 255, (2, 5, 7, 3)).astype(np.float32)
    keras_preprocess = getattr(keras.applications, module).preprocess_input
    np.testing.assert_allclose(model_spec(name).preprocessing(photos), keras_preprocess(photos.copy()), atol=1e-4)


def test_the_lite_preprocessing_maps_pixels_to_about_minus_one_to_one():
    preprocess = model_spec("efficientnet_lite0").preprocessing
    np.testing.assert_array_equal(preprocess(np.array([[[[0, 127, 255]]]])), [[[[-127 / 128, 0, 1]]]])


def test_the_default_model_is_offline_and_first():
    assert available_models()[0] == DEFAULT_MODEL and model_spec(DEFAULT_MODEL).offline


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
    assert "RuntimeError: could not download or read the ImageNet weights for 'vgg16'" in run.stderr
    assert f"Put vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 in {tmp_path / 'models'}" in run.stderr


def test_misspelled_weights_are_an_error_not_random_weights():
    with pytest.raises(ValueError, match="weights must be 'imagenet' or None, got 'ImageNet'"):
        load_model(weights="ImageNet")


@pytest.mark.parametrize("fields, error", [({"channels": "bgr"}, "channels must be 'RGB' or 'BGR'"),
                                           ({"std": (1.0, 0.0, 1.0)}, "std none of them 0"),
                                           ({"mean": (0.0, 0.0)}, "one value per channel"),
                                           ({"crop_fraction": 1.5}, "crop_fraction must be in")])
def test_preprocessing_records_are_checked(fields, error):
    with pytest.raises(ValueError, match=error):
        Preprocessing(**{"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0), **fields})


def test_preprocessing_records_hold_tuples_of_floats():
    preprocessing = Preprocessing(mean=np.array([1, 2, 3]), std=[4, 5, 6])
    assert preprocessing.mean == (1.0, 2.0, 3.0) and preprocessing.std == (4.0, 5.0, 6.0)
    assert hash(preprocessing) == hash(Preprocessing(mean=(1, 2, 3), std=(4, 5, 6)))  # a key of the engine's cache


def test_the_keras_path_shows_a_progress_bar_on_a_terminal_only(tiny_net, capsys, monkeypatch):
    photos = [np.zeros((8, 8, 3), np.uint8)] * PROGRESS_FROM
    list(predict_batches(tiny_net(), photos, batch_size=16))
    assert capsys.readouterr().err == ""  # a notebook's stderr is no terminal
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    list(predict_batches(tiny_net(), photos, batch_size=16))
    assert f"{PROGRESS_FROM}/{PROGRESS_FROM}" in capsys.readouterr().err
    list(predict_batches(tiny_net(), photos[1:], batch_size=16))
    assert capsys.readouterr().err == ""  # a few photos: done before a bar would say anything


def test_no_progress_bar_without_a_stderr(monkeypatch):
    monkeypatch.setattr(sys, "stderr", None)  # pythonw, some services
    with progress_bar(10 * PROGRESS_FROM) as bar:
        assert bar.disable
        bar.update(PROGRESS_FROM)
