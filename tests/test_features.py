import numpy as np
import pytest

from helpers import extract_features, list_images, load_features
from support import IMAGES, architecture


@pytest.mark.parametrize("pooling, shape", [("avg", (2, 1280)), ("max", (2, 1280)), (None, (2, 7, 7, 1280))])
def test_feature_shapes_for_each_pooling(lite0_headless, pooling, shape):
    features = extract_features(lite0_headless, [IMAGES / "coffee.png", IMAGES / "rocket.jpg"], pooling=pooling)
    assert features.vectors.shape == shape and features.vectors.dtype == np.float32
    assert features.model_name == "efficientnet_lite0" and features.pooling == pooling
    maps = extract_features(lite0_headless, [IMAGES / "coffee.png"], pooling=None).vectors
    if pooling == "avg":
        np.testing.assert_allclose(features.vectors[0], maps[0].mean(axis=(0, 1)), atol=1e-5)
    if pooling == "max":
        np.testing.assert_allclose(features.vectors[0], maps[0].max(axis=(0, 1)), atol=1e-5)


def test_rows_stay_aligned_when_some_files_are_bad(lite0_headless, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_text("not a photo")
    sources = [IMAGES / "coffee.png", tmp_path / "missing.png", IMAGES / "chelsea.png", broken, IMAGES / "coffee.png"]
    features = extract_features(lite0_headless, sources, batch_size=2)
    assert features.sources == [str(s) for s in sources]
    assert features.ok.tolist() == [True, False, True, False, True]
    assert "missing.png: no such file" in features.errors[1] and "broken.jpg: not an image" in features.errors[3]
    assert np.isnan(features.vectors[[1, 3]]).all() and np.isfinite(features.vectors[[0, 2, 4]]).all()
    np.testing.assert_allclose(features.vectors[0], features.vectors[4], rtol=1e-5)
    assert features.valid().sources == [str(IMAGES / "coffee.png"), str(IMAGES / "chelsea.png"), str(IMAGES / "coffee.png")]


def test_a_model_with_its_top_is_refused(lite0):
    with pytest.raises(ValueError, match="include_top=False"):
        extract_features(lite0, [IMAGES / "coffee.png"])


def test_save_and_load_round_trip(lite0_headless, tmp_path):
    features = extract_features(lite0_headless, [IMAGES / "coffee.png", tmp_path / "missing.png", IMAGES / "花.jpg"])
    features.save(tmp_path / "gallery.npz")
    loaded = load_features(tmp_path / "gallery.npz", model_name=lite0_headless.name)
    np.testing.assert_array_equal(loaded.vectors, features.vectors)
    assert (loaded.sources, loaded.errors, loaded.model_name, loaded.pooling) == \
        (features.sources, features.errors, features.model_name, features.pooling)


def test_loading_features_of_another_model_is_an_error(lite0_headless, tmp_path):
    extract_features(lite0_headless, [IMAGES / "coffee.png"]).save(tmp_path / "gallery.npz")
    with pytest.raises(ValueError, match="made by 'efficientnet_lite0', not 'vgg16'"):
        load_features(tmp_path / "gallery.npz", model_name="vgg16")


def test_keras_models_give_feature_vectors_of_their_width():
    net = architecture("vgg16")
    assert extract_features(net, list_images(IMAGES)[:2], backend="keras").vectors.shape == (2, 512)


def test_no_progress_bar_where_stderr_is_no_terminal(lite0_headless, capsys):
    # As in a notebook: many photos, on the engine and on Keras, which show a bar at a terminal only.
    photos = [np.zeros((8, 8, 3), np.uint8)] * 64
    extract_features(lite0_headless, photos, backend="litert")
    extract_features(lite0_headless, photos)
    assert capsys.readouterr().err == ""


def test_int8_features_are_close_to_float32_and_say_so(lite0_headless, tmp_path):
    photos = [IMAGES / "coffee.png", IMAGES / "chelsea.png", IMAGES / "animals" / "tiger.png"]
    small = extract_features(lite0_headless, photos, precision="int8", calibration=IMAGES)
    plain = extract_features(lite0_headless, photos)
    assert (small.precision, plain.precision, small.valid().precision) == ("int8", "float32", "int8")
    cosine = np.sum(small.vectors * plain.vectors, axis=1) / (
        np.linalg.norm(small.vectors, axis=1) * np.linalg.norm(plain.vectors, axis=1))
    assert cosine.min() >= 0.97 and not np.allclose(small.vectors, plain.vectors, atol=1e-4)
    small.save(tmp_path / "gallery.npz")
    assert load_features(tmp_path / "gallery.npz").precision == "int8"
