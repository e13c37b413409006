import logging

import keras
import numpy as np
import pytest

from helpers import Net, classify, extract_features, list_images, load_image, load_model
from helpers import backends
from helpers.backends import LiteRTModel, predictor
from conftest import DEV, IMAGES, run_cli


def _tiny_model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.BatchNormalization()(x)
    outputs = keras.layers.Dense(5, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs, name="tiny")


def test_litert_agrees_with_keras_on_the_photos(lite0):
    photos = list_images(IMAGES)
    fast, plain = classify(lite0, photos, backend="litert"), classify(lite0, photos, backend="keras")
    assert len(fast) == len(plain) == len(photos) and not any(r.error for r in fast + plain)
    for f, p in zip(fast, plain):
        assert [w for w, _, _ in f.predictions] == [w for w, _, _ in p.predictions], f.source
        assert np.allclose([s for *_, s in f.predictions], [s for *_, s in p.predictions], atol=1e-3)


@pytest.mark.parametrize("pooling", ["avg", "max", None])
def test_litert_features_match_keras(lite0_headless, pooling):
    photos = list_images(IMAGES)[:4]
    fast = extract_features(lite0_headless, photos, pooling=pooling, backend="litert").vectors.reshape(4, -1)
    plain = extract_features(lite0_headless, photos, pooling=pooling, backend="keras").vectors.reshape(4, -1)
    cosine = np.sum(fast * plain, axis=1) / (np.linalg.norm(fast, axis=1) * np.linalg.norm(plain, axis=1))
    assert cosine.min() >= 0.9999


def test_a_keras_registry_model_converts_and_agrees(tmp_path):
    net = load_model("mobilenet_v2", weights=None)  # random weights: shapes and agreement, not accuracy
    batch = net.preprocess(np.random.default_rng(0).uniform(0, 255, (3, 224, 224, 3)).astype(np.float32))
    fast = LiteRTModel(net.model, cache=tmp_path)(batch)
    assert fast.shape == (3, 1000)
    np.testing.assert_allclose(fast, net.model.predict(batch, verbose=0), atol=1e-5)


def test_conversion_is_cached_and_a_bad_cache_file_is_rebuilt(tmp_path, monkeypatch, caplog):
    model = _tiny_model()
    batch = np.random.default_rng(1).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    first = LiteRTModel(model, cache=tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [first.path.name]
    assert first.path.name.startswith("tiny-32x32-")

    calls = []
    convert = backends._convert
    monkeypatch.setattr(backends, "_convert", lambda m: calls.append(m) or convert(m))
    np.testing.assert_allclose(LiteRTModel(model, cache=tmp_path)(batch), first(batch))
    assert calls == []  # loaded from the cache

    first.path.write_bytes(b"not a flatbuffer")  # corrupt
    with caplog.at_level(logging.WARNING, logger="helpers"):
        rebuilt = LiteRTModel(model, cache=tmp_path)
    assert len(calls) == 1 and "rebuilding" in caplog.text
    np.testing.assert_allclose(rebuilt(batch), model.predict(batch, verbose=0), atol=1e-5)

    other = LiteRTModel(_tiny_model(seed=7), cache=tmp_path)  # another model's file under this name: stale
    first.path.write_bytes(other.path.read_bytes())
    np.testing.assert_allclose(LiteRTModel(model, cache=tmp_path)(batch), model.predict(batch, verbose=0), atol=1e-5)
    assert len(calls) == 3  # 'other' and the stale one were converted
    assert not list(tmp_path.glob("*.part"))


def test_without_litert_keras_is_used_with_one_log_line(lite0, monkeypatch, caplog):
    monkeypatch.setattr(backends, "litert_available", lambda: False)
    monkeypatch.setattr(backends, "_warned", False)
    with caplog.at_level(logging.WARNING, logger="helpers"):
        first = classify(lite0, [IMAGES / "coffee.png"])
        classify(lite0, [IMAGES / "coffee.png"])
    assert first[0].predictions[0][1] == "espresso"
    assert caplog.text.count("ai-edge-litert is not installed") == 1
    with pytest.raises(RuntimeError, match="pip install ai-edge-litert"):
        predictor(lite0, "litert")
    with pytest.raises(ValueError, match="backend must be one of keras, litert"):
        predictor(lite0, "onnx")


def test_cli_backend_option():
    run = run_cli("classify", str(IMAGES / "coffee.png"), "--top", "1", "--backend", "keras")
    assert run.returncode == 0 and "espresso" in run.stdout
    assert run_cli("classify", str(IMAGES / "coffee.png"), "--backend", "onnx").returncode == 2


@pytest.mark.skipif(not DEV.is_dir(), reason="dev data ../shared/data/imagenet-sample-dev is absent")
def test_litert_matches_keras_on_the_dev_set(lite0, lite0_headless):
    files = list_images(DEV)
    batch = lambda fs: lite0.preprocess(np.stack([load_image(f, size=lite0.input_size) for f in fs]))  # noqa: E731
    fast, plain = predictor(lite0, "litert"), predictor(lite0, "keras")
    same_top1, largest = 0, 0.0
    for start in range(0, len(files), 50):
        x = batch(files[start:start + 50])
        a, b = fast(x), plain(x)
        same_top1 += int((a.argmax(1) == b.argmax(1)).sum())
        largest = max(largest, float(np.abs(a - b).max()))
    print(f"LiteRT vs Keras on {len(files)} dev photos: top-1 equal {same_top1}, largest difference {largest:.2e}")
    assert same_top1 / len(files) >= 0.995 and largest < 1e-3

    head_fast = extract_features(lite0_headless, files[:100], backend="litert").vectors
    head_plain = extract_features(lite0_headless, files[:100], backend="keras").vectors
    cosine = np.sum(head_fast * head_plain, 1) / (np.linalg.norm(head_fast, axis=1) * np.linalg.norm(head_plain, axis=1))
    assert cosine.min() >= 0.9999


def test_conversion_prints_and_logs_nothing(tmp_path, capsys, caplog):
    # Notebooks store whatever a cell prints: a first conversion must stay silent.
    with caplog.at_level(logging.INFO):
        LiteRTModel(_tiny_model(), cache=tmp_path)
    assert capsys.readouterr() == ("", "")
    assert [r.getMessage() for r in caplog.records] == []


def test_changed_weights_are_converted_again(tmp_path, monkeypatch):
    monkeypatch.setenv("HELPERS_CACHE", str(tmp_path))
    net = Net("tiny", _tiny_model(), (32, 32), lambda batch: np.asarray(batch, np.float32) / 255, "")
    batch = np.random.default_rng(2).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    before = predictor(net, "litert")(batch)
    net.model.set_weights([w * 0.5 for w in net.model.get_weights()])
    after = predictor(net, "litert")(batch)
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, net.model.predict(batch, verbose=0), atol=1e-5)


def test_an_unwritable_cache_keeps_the_conversion_in_memory(tmp_path, caplog):
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING, logger="helpers"):
        fast = LiteRTModel(_tiny_model(), cache=blocked / "litert")
    assert "keeping it in memory" in caplog.text
    assert fast(np.zeros((1, 32, 32, 3), np.float32)).shape == (1, 5)
