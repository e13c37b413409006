import logging
import shutil

import numpy as np
import pytest

from helpers import classify, extract_features, list_images, load_image, load_model
from helpers import backends
from helpers.backends import LiteRTModel, predictor
from support import DEV, IMAGES, needs_dev


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


def test_conversion_is_cached_and_a_bad_cache_file_is_rebuilt(tiny_net, tmp_path, monkeypatch, caplog):
    model = tiny_net().model
    batch = np.random.default_rng(1).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    first = LiteRTModel(model, cache=tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [first.path.name]
    assert first.path.name.startswith("tiny-32x32-")

    calls = []
    convert = backends._convert
    monkeypatch.setattr(backends, "_convert", lambda m, *rest: calls.append(m) or convert(m, *rest))
    np.testing.assert_allclose(LiteRTModel(model, cache=tmp_path)(batch), first(batch))
    assert calls == []  # loaded from the cache

    first.path.write_bytes(b"not a flatbuffer")  # corrupt
    with caplog.at_level(logging.WARNING, logger="helpers"):
        rebuilt = LiteRTModel(model, cache=tmp_path)
    assert len(calls) == 1 and "rebuilding" in caplog.text
    np.testing.assert_allclose(rebuilt(batch), model.predict(batch, verbose=0), atol=1e-5)

    other = LiteRTModel(tiny_net(seed=7).model, cache=tmp_path)  # another model's file under this name: stale
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




@pytest.fixture(scope="module")
def dev_photos(lite0):
    """The dev photos as the models take them, decoded once for the tests below: uint8 (n, 224, 224, 3)."""
    return np.stack([load_image(f, size=lite0.input_size, dtype="uint8") for f in list_images(DEV)])


@needs_dev
def test_litert_matches_keras_on_the_dev_set(lite0, lite0_headless, dev_photos):
    fast, plain = predictor(lite0, "litert"), predictor(lite0, "keras")
    n, same_top1, largest = len(dev_photos), 0, 0.0
    for start in range(0, n, 50):
        x = dev_photos[start:start + 50]
        a, b = fast(x), plain(x)
        same_top1 += int((a.argmax(1) == b.argmax(1)).sum())
        largest = max(largest, float(np.abs(a - b).max()))
    print(f"LiteRT vs Keras on {n} dev photos: top-1 equal {same_top1}, largest difference {largest:.2e}")
    assert same_top1 / n >= 0.995 and largest < 1e-3

    head_fast = predictor(lite0_headless, "litert")(dev_photos[:100]).mean(axis=(1, 2))
    head_plain = predictor(lite0_headless, "keras")(dev_photos[:100]).mean(axis=(1, 2))
    cosine = np.sum(head_fast * head_plain, 1) / (np.linalg.norm(head_fast, axis=1) * np.linalg.norm(head_plain, axis=1))
    assert cosine.min() >= 0.9999


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_conversion_prints_and_logs_nothing(tiny_net, tmp_path, capsys, caplog, recwarn, precision):
    # Notebooks store whatever a cell prints or warns: a first conversion must stay silent.
    net = tiny_net()
    with caplog.at_level(logging.INFO):
        LiteRTModel(net.model, cache=tmp_path, precision=precision, preprocess=net.preprocess)
    assert capsys.readouterr() == ("", "")
    assert [str(w.message) for w in recwarn if issubclass(w.category, UserWarning)] == []
    assert [r.getMessage() for r in caplog.records] == []


def test_changed_weights_are_converted_again(tiny_net, tmp_path, monkeypatch):
    monkeypatch.setenv("HELPERS_CACHE", str(tmp_path))
    net = tiny_net()
    batch = np.random.default_rng(2).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    before = predictor(net, "litert")(batch)
    net.model.set_weights([w * 0.5 for w in net.model.get_weights()])
    after = predictor(net, "litert")(batch)
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, net.model.predict(net.preprocess(batch), verbose=0), atol=1e-5)


def test_an_unwritable_cache_keeps_the_conversion_in_memory(tiny_net, tmp_path, caplog):
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING, logger="helpers"):
        fast = LiteRTModel(tiny_net().model, cache=blocked / "litert")
    assert "keeping it in memory" in caplog.text
    assert fast(np.zeros((1, 32, 32, 3), np.float32)).shape == (1, 5)


def test_int8_is_cached_under_its_own_name_and_a_wrong_file_is_rebuilt(tiny_net, tmp_path, monkeypatch, caplog):
    net = tiny_net()
    calls = []
    convert = backends._convert
    monkeypatch.setattr(backends, "_convert", lambda m, *rest: calls.append(m) or convert(m, *rest))
    fast = LiteRTModel(net.model, cache=tmp_path)
    small = LiteRTModel(net.model, cache=tmp_path, precision="int8", preprocess=net.preprocess)
    assert small.path.name.startswith(fast.path.stem + "-int8-") and len(calls) == 2
    photos = net.preprocess(backends.calibration_images((32, 32))[5::7].astype(np.float32))
    expected = net.model.predict(photos, verbose=0)
    assert backends.int8_matches(small(photos), expected)
    assert not np.allclose(small(photos), expected, atol=1e-5)  # really rounded: not the float model
    LiteRTModel(net.model, cache=tmp_path, precision="int8", preprocess=net.preprocess)
    assert len(calls) == 2  # loaded from the cache

    small.path.write_bytes(fast.path.read_bytes())  # the float model under the int8 name: not int8
    with caplog.at_level(logging.WARNING, logger="helpers"):
        LiteRTModel(net.model, cache=tmp_path, precision="int8", preprocess=net.preprocess)
    assert len(calls) == 3 and "rebuilding" in caplog.text
    other = LiteRTModel(tiny_net(seed=7).model, cache=tmp_path, precision="int8", preprocess=net.preprocess)
    small.path.write_bytes(other.path.read_bytes())  # other weights' int8 file under this name
    rebuilt = LiteRTModel(net.model, cache=tmp_path, precision="int8", preprocess=net.preprocess)
    assert len(calls) == 5 and backends.int8_matches(rebuilt(photos), expected)


def test_the_calibration_photos_are_part_of_the_int8_key(tiny_net, tmp_path, monkeypatch):
    net = tiny_net()
    first = LiteRTModel(net.model, cache=tmp_path, precision="int8", preprocess=net.preprocess)
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("coffee.png", "chelsea.png"):
        shutil.copy(IMAGES / name, photos / name)
    monkeypatch.setattr(backends, "CALIBRATION_PHOTOS", photos)
    second = LiteRTModel(net.model, cache=tmp_path, precision="int8", preprocess=net.preprocess)
    assert second.path != first.path and second.path.is_file()


def test_calibration_images_are_fixed_crops_and_skip_copies(tmp_path):
    shutil.copy(IMAGES / "coffee.png", tmp_path / "a.png")
    one = backends.calibration_images((32, 32), tmp_path)
    shutil.copy(IMAGES / "coffee.png", tmp_path / "b.png")  # the same photo under another name
    again = backends.calibration_images((32, 32), tmp_path)
    # 600x400: 3 squares of the whole height, 9 of 60% of it, each also mirrored
    assert one.dtype == np.uint8 and one.shape == (24, 32, 32, 3)
    np.testing.assert_array_equal(one, again)
    np.testing.assert_array_equal(one[1], one[0][:, ::-1])
    with pytest.raises(FileNotFoundError, match="no such folder"):
        backends.calibration_images((32, 32), tmp_path / "missing")


def test_int8_needs_litert_and_a_known_precision(tiny_net, monkeypatch):
    net = tiny_net()
    with pytest.raises(ValueError, match="precision must be one of float32, int8"):
        predictor(net, precision="float16")
    with pytest.raises(ValueError, match="runs on LiteRT only"):
        predictor(net, "keras", precision="int8")
    monkeypatch.setattr(backends, "litert_available", lambda: False)
    with pytest.raises(RuntimeError, match="pip install ai-edge-litert"):
        predictor(net, precision="int8")


def test_int8_agrees_with_float_on_photos_it_was_not_calibrated_on(lite0):
    animals = list_images(IMAGES / "animals")  # calibration uses the photos of images/ itself
    photos = np.stack([load_image(f, size=lite0.input_size, dtype="uint8") for f in animals])
    small, fast = predictor(lite0, "litert", "int8")(photos), predictor(lite0, "litert")(photos)
    assert np.mean(small.argmax(1) == fast.argmax(1)) >= 0.9
    assert backends.int8_matches(small, fast)


@needs_dev
def test_int8_features_stay_close_to_float32_on_the_dev_set(lite0_headless, dev_photos):
    # The classifier's int8 accuracy on the dev set: test_classify, from the files.
    features = {}
    for precision in ("float32", "int8"):
        run = predictor(lite0_headless, "litert", precision)
        features[precision] = np.concatenate([run(dev_photos[start:start + 50]).mean(axis=(1, 2))
                                              for start in range(0, len(dev_photos), 50)])
    a, b = features["float32"], features["int8"]
    cosine = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    print(f"dev feature cosine, int8 vs float32: mean {cosine.mean():.4f}, min {cosine.min():.4f}")
    assert cosine.mean() >= 0.99


def test_int8_takes_photos_as_pixels_when_its_input_quantization_is_the_preprocessing(tiny_net, tmp_path):
    net = tiny_net()  # EfficientNet-Lite's preprocessing, (x - 127) / 128
    small = LiteRTModel(net.model, cache=tmp_path, precision="int8", preprocess=net.preprocess)
    assert small.takes_pixels and small.quantization == (1 / 128, 127)
    photos = backends.calibration_images((32, 32))[3::9]
    # uint8 photos go in as they are; float ones are preprocessed and quantized: the same levels.
    np.testing.assert_array_equal(small.on_photos(photos), small.on_photos(photos.astype(np.float32)))
    assert backends.int8_matches(small.on_photos(photos), net.model.predict(net.preprocess(photos), verbose=0))


def test_int8_with_another_preprocessing_quantizes_the_preprocessed_photos(tiny_net, tmp_path):
    net = tiny_net()
    to_unit = lambda batch: np.asarray(batch, dtype=np.float32) / 127.5 - 1  # noqa: E731 (MobileNetV2's)
    small = LiteRTModel(net.model, cache=tmp_path, precision="int8", preprocess=to_unit)
    assert not small.takes_pixels  # a scale of 2/255 cannot map every pixel level to itself
    photos = backends.calibration_images((32, 32))[3::9]
    assert backends.int8_matches(small.on_photos(photos), net.model.predict(to_unit(photos), verbose=0))


def recording_batch_sizes(fast: LiteRTModel) -> list[int]:
    """The size of every batch ``fast``'s interpreters are given from now on."""
    sizes: list[int] = []
    make = fast._interpreter

    def interpreter(threads):
        made = make(threads)
        if not hasattr(made, "recorded"):
            made.recorded, set_tensor = True, made.set_tensor
            made.set_tensor = lambda index, value: sizes.append(len(value)) or set_tensor(index, value)
        return made

    fast._interpreter = interpreter
    return sizes


def test_a_batch_runs_in_sub_batches_with_the_outputs_of_one_photo_at_a_time(tiny_net, tmp_path):
    net = tiny_net()
    fast = LiteRTModel(net.model, cache=tmp_path, preprocess=net.preprocess)
    photos = np.random.default_rng(3).integers(0, 256, (2 * backends.SUB_BATCH + 3, 32, 32, 3), dtype=np.uint8)
    alone = np.concatenate([fast.on_photos(photo[None]) for photo in photos])
    sizes = recording_batch_sizes(fast)
    np.testing.assert_allclose(fast.on_photos(photos), alone, atol=1e-6)
    assert sizes == [backends.SUB_BATCH, backends.SUB_BATCH, 3]


def test_calls_from_two_threads_run_at_once_on_their_own_interpreters(tiny_net, tmp_path):
    import threading
    from concurrent.futures import ThreadPoolExecutor

    net = tiny_net()
    fast = LiteRTModel(net.model, cache=tmp_path, preprocess=net.preprocess)
    photos = np.random.default_rng(4).integers(0, 256, (2, 5, 32, 32, 3), dtype=np.uint8)
    expected = [fast.on_photos(batch) for batch in photos]
    # Each call waits inside its interpreter until the other call is inside one too:
    # calls that took turns would break the barrier after its timeout.
    both_inside = threading.Barrier(2, timeout=30)
    make = fast._interpreter

    def interpreter(threads):
        made = make(threads)
        both_inside.wait()
        return made

    fast._interpreter = interpreter
    with ThreadPoolExecutor(2) as pool:
        got = list(pool.map(lambda batch: fast.on_photos(batch, threads=1), photos))
    for outputs, want in zip(got, expected):
        np.testing.assert_allclose(outputs, want, atol=1e-6)


def test_bad_batches_and_thread_counts_are_refused(tiny_net, tmp_path):
    net = tiny_net()
    fast = LiteRTModel(net.model, cache=tmp_path, preprocess=net.preprocess)
    with pytest.raises(ValueError, match=r"a batch of shape \(1, 64, 64, 3\): expected \(n >= 1, 32, 32, 3\)"):
        fast.on_photos(np.zeros((1, 64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="a batch of shape"):
        fast.on_photos(np.zeros((0, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="threads must be at least 1"):
        fast.on_photos(np.zeros((1, 32, 32, 3), np.uint8), threads=0)
    with pytest.raises(ValueError, match="threads must be at least 1"):
        LiteRTModel(net.model, cache=tmp_path, threads=-2)


def test_a_model_litert_cannot_run_falls_back_to_keras_once_per_weights(tiny_net, monkeypatch, caplog):
    net = tiny_net()
    tries = []

    def cannot(*args, **kwargs):
        tries.append(1)
        raise RuntimeError("no kernel for this op")

    monkeypatch.setattr(backends, "LiteRTModel", cannot)
    photos = np.zeros((2, 32, 32, 3), np.uint8)
    with caplog.at_level(logging.WARNING, logger="helpers"):
        outputs = [predictor(net)(photos) for _ in range(3)]
    assert len(tries) == 1 and "running on Keras" in caplog.text
    np.testing.assert_allclose(outputs[0], net.model.predict(net.preprocess(photos), verbose=0), atol=1e-6)
    with pytest.raises(RuntimeError, match="no kernel"):
        predictor(net, "litert")  # asked for by name: the error, not Keras
