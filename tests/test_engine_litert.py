import logging
import shutil

import keras
import numpy as np
import pytest

from helpers import classify, extract_features, list_images, load_image, load_model
from helpers.engine import litert
from helpers.engine.litert import SUB_BATCH, LiteRTModel, calibration_crops, int8_matches, model_digest, weights_digest
from support import DEV, IMAGES, needs_dev


@pytest.fixture(scope="module")
def crops():
    """What the tiny models calibrate on: the crops of images/ at 32x32, uint8 (272, 32, 32, 3)."""
    return calibration_crops(IMAGES, (32, 32))


def converted(net, precision: str = "float32") -> LiteRTModel:
    """``net`` on LiteRT in the default cache (shared with the notebooks); int8 calibrated on images/."""
    calibration = calibration_crops(IMAGES, net.input_size) if precision == "int8" else None
    return LiteRTModel(net.model, precision=precision, preprocess=net.preprocess, calibration=calibration)


def counting_conversions(monkeypatch) -> list:
    """The Keras models ``convert`` is given from now on, as LiteRTModel calls it."""
    calls = []
    convert = litert.convert
    monkeypatch.setattr(litert, "convert", lambda m, *rest: calls.append(m) or convert(m, *rest))
    return calls


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


def test_a_keras_registry_model_converts_and_agrees():
    # Random weights (shapes and agreement, not accuracy), the same in every run: converted once
    # into the shared cache, whose file must reproduce the model on loading too.
    keras.utils.set_random_seed(0)
    net = load_model("mobilenet_v2", weights=None)
    batch = net.preprocess(np.random.default_rng(0).uniform(0, 255, (3, 224, 224, 3)).astype(np.float32))
    fast = LiteRTModel(net.model)(batch)
    assert fast.shape == (3, 1000)
    np.testing.assert_allclose(fast, net.model.predict(batch, verbose=0), atol=1e-5)


def test_conversion_is_cached_and_a_bad_cache_file_is_rebuilt(tiny_net, tmp_path, monkeypatch, caplog):
    model = tiny_net().model
    batch = np.random.default_rng(1).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    first = LiteRTModel(model, cache=tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [first.path.name]
    assert first.weights_digest == weights_digest(model) and first.model_digest == model_digest(model)
    assert first.path.name == f"tiny-32x32-{first.model_digest}.tflite"

    calls = counting_conversions(monkeypatch)
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


@pytest.fixture(scope="module")
def dev_photos(lite0):
    """The dev photos as the models take them, decoded once for the tests below: uint8 (n, 224, 224, 3)."""
    return np.stack([load_image(f, size=lite0.input_size, dtype="uint8") for f in list_images(DEV)])


@needs_dev
def test_litert_matches_keras_on_the_dev_set(lite0, lite0_headless, dev_photos):
    fast = converted(lite0)
    photos = dev_photos[::2]  # 250 photos of 250 classes: Keras' half of the work is most of this test's time
    n, same_top1, largest = len(photos), 0, 0.0
    for start in range(0, n, 50):
        x = photos[start:start + 50]
        a, b = fast.on_photos(x), lite0.model.predict_on_batch(lite0.preprocess(x))
        same_top1 += int((a.argmax(1) == b.argmax(1)).sum())
        largest = max(largest, float(np.abs(a - b).max()))
    print(f"LiteRT vs Keras on {n} dev photos: top-1 equal {same_top1}, largest difference {largest:.2e}")
    assert same_top1 / n >= 0.995 and largest < 1e-3

    head_fast = converted(lite0_headless).on_photos(dev_photos[:100]).mean(axis=(1, 2))
    head_plain = np.asarray(lite0_headless.model.predict_on_batch(lite0_headless.preprocess(dev_photos[:100])))
    head_plain = head_plain.mean(axis=(1, 2))
    cosine = np.sum(head_fast * head_plain, 1) / (np.linalg.norm(head_fast, axis=1) * np.linalg.norm(head_plain, axis=1))
    assert cosine.min() >= 0.9999


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_conversion_prints_and_logs_nothing(tiny_net, tmp_path, crops, capsys, caplog, recwarn, precision):
    # Notebooks store whatever a cell prints or warns: a first conversion must stay silent.
    net = tiny_net()
    with caplog.at_level(logging.INFO):
        LiteRTModel(net.model, cache=tmp_path, precision=precision, preprocess=net.preprocess,
                    calibration=crops if precision == "int8" else None)
    assert capsys.readouterr() == ("", "")
    assert [str(w.message) for w in recwarn if issubclass(w.category, UserWarning)] == []
    assert [r.getMessage() for r in caplog.records] == []


def test_an_unwritable_cache_keeps_the_conversion_in_memory(tiny_net, tmp_path, caplog):
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING, logger="helpers"):
        fast = LiteRTModel(tiny_net().model, cache=blocked / "litert")
    assert "keeping it in memory" in caplog.text
    assert fast(np.zeros((1, 32, 32, 3), np.float32)).shape == (1, 5)


def test_int8_is_cached_under_its_own_name_and_a_wrong_file_is_rebuilt(tiny_net, tmp_path, crops, monkeypatch,
                                                                        caplog):
    net = tiny_net()
    calls = counting_conversions(monkeypatch)
    fast = LiteRTModel(net.model, cache=tmp_path)
    small = LiteRTModel(net.model, cache=tmp_path, precision="int8", preprocess=net.preprocess, calibration=crops)
    assert small.path.name.startswith(fast.path.stem + "-int8-") and len(calls) == 2
    photos = net.preprocess(crops[5::7].astype(np.float32))
    expected = net.model.predict(photos, verbose=0)
    assert int8_matches(small(photos), expected)
    assert not np.allclose(small(photos), expected, atol=1e-5)  # really rounded: not the float model
    LiteRTModel(net.model, cache=tmp_path, precision="int8", preprocess=net.preprocess, calibration=crops)
    assert len(calls) == 2  # loaded from the cache

    small.path.write_bytes(fast.path.read_bytes())  # the float model under the int8 name: not int8
    with caplog.at_level(logging.WARNING, logger="helpers"):
        LiteRTModel(net.model, cache=tmp_path, precision="int8", preprocess=net.preprocess, calibration=crops)
    assert len(calls) == 3 and "rebuilding" in caplog.text
    other = LiteRTModel(tiny_net(seed=7).model, cache=tmp_path, precision="int8", preprocess=net.preprocess,
                        calibration=crops)
    small.path.write_bytes(other.path.read_bytes())  # other weights' int8 file under this name
    rebuilt = LiteRTModel(net.model, cache=tmp_path, precision="int8", preprocess=net.preprocess, calibration=crops)
    assert len(calls) == 5 and int8_matches(rebuilt(photos), expected)


def test_the_calibration_photos_passed_in_are_part_of_the_int8_key(tiny_net, tmp_path, crops, monkeypatch):
    net = tiny_net()
    first = LiteRTModel(net.model, cache=tmp_path, precision="int8", preprocess=net.preprocess, calibration=crops)
    others = calibration_crops([IMAGES / "coffee.png", IMAGES / "chelsea.png"], (32, 32))
    second = LiteRTModel(net.model, cache=tmp_path, precision="int8", preprocess=net.preprocess, calibration=others)
    assert second.path != first.path and first.path.is_file() and second.path.is_file()
    calls = counting_conversions(monkeypatch)
    again = LiteRTModel(net.model, cache=tmp_path, precision="int8", preprocess=net.preprocess,
                        calibration=calibration_crops(IMAGES, (32, 32)))
    assert again.path == first.path and calls == []  # the same photos: the same file, loaded


def test_calibration_crops_are_fixed_crops_and_skip_copies(tmp_path):
    shutil.copy(IMAGES / "coffee.png", tmp_path / "a.png")
    one = calibration_crops(tmp_path, (32, 32))
    shutil.copy(IMAGES / "coffee.png", tmp_path / "b.png")  # the same photo under another name
    again = calibration_crops(tmp_path, (32, 32))
    # 600x400: 3 squares of the whole height, 9 of 60% of it, each also mirrored
    assert one.dtype == np.uint8 and one.shape == (24, 32, 32, 3)
    np.testing.assert_array_equal(one, again)
    np.testing.assert_array_equal(one[1], one[0][:, ::-1])
    # A list of photos, files or pictures in memory, gives what their folder gives.
    coffee = load_image(IMAGES / "coffee.png", dtype="uint8")
    np.testing.assert_array_equal(calibration_crops([tmp_path / "a.png", coffee], (32, 32)), one)
    assert calibration_crops([tmp_path / "a.png"], (24, 40)).shape == (24, 24, 40, 3)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        calibration_crops(tmp_path / "missing", (32, 32))
    with pytest.raises(ValueError, match="no calibration photos"):
        calibration_crops([], (32, 32))


def test_int8_needs_a_known_precision_and_calibration_photos_at_the_input_size(tiny_net, tmp_path, crops):
    net = tiny_net()
    with pytest.raises(ValueError, match="precision must be one of float32, int8"):
        LiteRTModel(net.model, cache=tmp_path, precision="float16")
    with pytest.raises(ValueError, match="needs the model's preprocess function and calibration photos"):
        LiteRTModel(net.model, cache=tmp_path, precision="int8", preprocess=net.preprocess)
    with pytest.raises(ValueError, match="needs the model's preprocess function and calibration photos"):
        LiteRTModel(net.model, cache=tmp_path, precision="int8", calibration=crops)
    with pytest.raises(ValueError, match=r"calibration photos of shape \(10, 24, 24, 3\): expected \(n, 32, 32, 3\)"):
        LiteRTModel(net.model, cache=tmp_path, precision="int8", preprocess=net.preprocess,
                    calibration=crops[:10, :24, :24])
    assert list(tmp_path.iterdir()) == []  # refused before converting anything


def test_int8_agrees_with_float_on_photos_it_was_not_calibrated_on(lite0):
    animals = list_images(IMAGES / "animals")  # calibrated on images/ itself, not its animals/ folder
    photos = np.stack([load_image(f, size=lite0.input_size, dtype="uint8") for f in animals])
    small, fast = converted(lite0, "int8").on_photos(photos), converted(lite0).on_photos(photos)
    assert np.mean(small.argmax(1) == fast.argmax(1)) >= 0.9
    assert int8_matches(small, fast)


@needs_dev
def test_int8_features_stay_close_to_float32_on_the_dev_set(lite0_headless, dev_photos):
    # The classifier's int8 accuracy on the dev set: test_classify, from the files.
    photos = dev_photos[::2]  # 250 photos of 250 classes: the mean is asserted, and 250 pin it to about 0.001
    features = {}
    for precision in ("float32", "int8"):
        fast = converted(lite0_headless, precision)
        features[precision] = np.concatenate([fast.on_photos(photos[start:start + 50]).mean(axis=(1, 2))
                                              for start in range(0, len(photos), 50)])
    a, b = features["float32"], features["int8"]
    cosine = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    print(f"dev feature cosine, int8 vs float32: mean {cosine.mean():.4f}, min {cosine.min():.4f}")
    assert cosine.mean() >= 0.99


def test_int8_takes_photos_as_pixels_when_its_input_quantization_is_the_preprocessing(tiny_net, tmp_path, crops):
    net = tiny_net()  # EfficientNet-Lite's preprocessing, (x - 127) / 128
    small = LiteRTModel(net.model, cache=tmp_path, precision="int8", preprocess=net.preprocess, calibration=crops)
    assert small.takes_pixels and small.quantization == (1 / 128, 127)
    photos = crops[3::9]
    # uint8 photos go in as they are; float ones are preprocessed and quantized: the same levels.
    np.testing.assert_array_equal(small.on_photos(photos), small.on_photos(photos.astype(np.float32)))
    assert int8_matches(small.on_photos(photos), net.model.predict(net.preprocess(photos), verbose=0))


def test_int8_with_another_preprocessing_quantizes_the_preprocessed_photos(tiny_net, tmp_path, crops):
    net = tiny_net()
    to_unit = lambda batch: np.asarray(batch, dtype=np.float32) / 127.5 - 1  # noqa: E731 (MobileNetV2's)
    small = LiteRTModel(net.model, cache=tmp_path, precision="int8", preprocess=to_unit, calibration=crops)
    assert not small.takes_pixels  # a scale of 2/255 cannot map every pixel level to itself
    photos = crops[3::9]
    assert int8_matches(small.on_photos(photos), net.model.predict(to_unit(photos), verbose=0))


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
    assert fast.sub_batch == SUB_BATCH
    photos = np.random.default_rng(3).integers(0, 256, (2 * SUB_BATCH + 3, 32, 32, 3), dtype=np.uint8)
    alone = np.concatenate([fast.on_photos(photo[None]) for photo in photos])
    sizes = recording_batch_sizes(fast)
    np.testing.assert_allclose(fast.on_photos(photos), alone, atol=1e-6)
    assert sizes == [SUB_BATCH, SUB_BATCH, 3]

    fast.sub_batch = 5  # per model: another model keeps the default
    sizes.clear()
    np.testing.assert_allclose(fast.on_photos(photos), alone, atol=1e-6)
    assert sizes == [5, 5, 1]
    assert LiteRTModel(net.model, cache=tmp_path, preprocess=net.preprocess).sub_batch == SUB_BATCH


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
    with pytest.raises(ValueError, match="on_photos needs the model's preprocess function"):
        LiteRTModel(net.model, cache=tmp_path).on_photos(np.zeros((1, 32, 32, 3), np.uint8))
