import logging
import shutil
import sys

import numpy as np
import pytest

from helpers import classify, list_images, load_image
from helpers.engine import litert, pipeline
from helpers.engine.litert import calibration_crops, int8_matches
from helpers.engine.pipeline import predictor, stream_batches
from helpers.models import PROGRESS_FROM, progress_bar
from support import IMAGES


def gray_photos(n: int) -> list[np.ndarray]:
    """``n`` photos of different flat colours, as arrays."""
    return [np.full((40, 50, 3), (7 * i, 255 - 9 * i, 11 * i % 256), np.uint8) for i in range(n)]


@pytest.mark.parametrize("backend", ["litert", "keras"])
def test_batches_come_in_order_with_one_error_per_source(tiny_net, tmp_path, backend):
    net = tiny_net()
    broken = tmp_path / "broken.jpg"
    broken.write_text("not a photo")
    photos = gray_photos(10)
    sources = photos[:3] + [broken] + photos[3:]
    got = list(stream_batches(net, sources, batch_size=3, workers=3, backend=backend))
    errors = [e for batch_errors, _ in got for e in batch_errors]
    assert [len(batch_errors) for batch_errors, _ in got] == [3, 3, 3, 2]
    assert [i for i, e in enumerate(errors) if e] == [3] and "broken.jpg" in errors[3]
    outputs = np.concatenate([o for _, o in got if o is not None])
    expected = net.model.predict(net.preprocess(np.stack([load_image(p, size=32) for p in photos])), verbose=0)
    np.testing.assert_allclose(outputs, expected, atol=1e-5)


def test_a_few_sources_are_shared_among_the_workers(tiny_net):
    got = list(stream_batches(tiny_net(), gray_photos(10), batch_size=32, workers=2))
    assert [len(errors) for errors, _ in got] == [5, 5]
    assert list(stream_batches(tiny_net(), [], workers=2)) == []


def test_stopping_early_starts_no_more_batches(tiny_net, monkeypatch):
    import threading

    photos, started, release = gray_photos(100), [], threading.Event()
    load_images = pipeline.load_images

    def slow_load_images(chunk, size, crop_fraction):
        started.append(len(chunk))
        if chunk[0] is not photos[0]:  # the first batch comes back; the others wait until the caller stopped
            release.wait(timeout=30)
        return load_images(chunk, size, crop_fraction)

    monkeypatch.setattr(pipeline, "load_images", slow_load_images)
    stream = stream_batches(tiny_net(), photos, batch_size=2, workers=2)
    next(stream)
    threading.Timer(0.5, release.set).start()  # lets the batches under way finish
    stream.close()
    # 5 batches were submitted (twice the workers, then one more); the 2 or 3 that had not
    # started when the caller stopped never start.
    assert len(started) <= 3


def test_bad_arguments_are_refused(tiny_net):
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        next(stream_batches(tiny_net(), gray_photos(2), batch_size=0))
    for workers in (0, -1):
        with pytest.raises(ValueError, match="workers must be at least 1"):
            next(stream_batches(tiny_net(), gray_photos(2), workers=workers))
    with pytest.raises(ValueError, match="backend must be one of keras, litert, fastest"):
        next(stream_batches(tiny_net(), gray_photos(2), backend="onnx"))
    with pytest.raises(ValueError, match="precision must be one of float32, int8"):
        list(stream_batches(tiny_net(), [], precision="float16"))  # even for no sources


def test_workers_run_inside_a_callers_quiet_stderr_block(tiny_net):
    # Worker threads make their own interpreters; quiet_stderr is held by the caller's thread.
    import threading

    from helpers.quiet import quiet_stderr

    result = []

    def run():
        with quiet_stderr():
            result.extend(stream_batches(tiny_net(), gray_photos(8), batch_size=2, workers=2, backend="litert"))

    caller = threading.Thread(target=run, daemon=True)
    caller.start()
    caller.join(timeout=120)
    assert not caller.is_alive(), "stream_batches deadlocked inside quiet_stderr"
    assert [len(errors) for errors, _ in result] == [2, 2, 2, 2]


def test_no_progress_bar_where_stderr_is_no_terminal(tiny_net, capsys):
    # A notebook's stderr is no terminal: its stored output must not get a bar.
    assert not sys.stderr.isatty() and progress_bar(10 * PROGRESS_FROM).disable
    list(stream_batches(tiny_net(), gray_photos(PROGRESS_FROM), batch_size=8, backend="keras"))
    assert capsys.readouterr().err == ""


def test_a_progress_bar_on_a_terminal_from_progress_from_images_on(tiny_net, capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    list(stream_batches(tiny_net(), gray_photos(PROGRESS_FROM), batch_size=8, backend="keras"))
    shown = capsys.readouterr().err
    assert f"{PROGRESS_FROM}/{PROGRESS_FROM}" in shown and "img/s" in shown

    assert progress_bar(PROGRESS_FROM - 1).disable  # a few images: done before a bar would say anything
    list(stream_batches(tiny_net(), gray_photos(PROGRESS_FROM - 1), batch_size=8, backend="keras"))
    assert capsys.readouterr().err == ""


def test_without_litert_keras_is_used_with_one_log_line(lite0, monkeypatch, caplog):
    monkeypatch.setattr(pipeline, "litert_available", lambda: False)
    monkeypatch.setattr(pipeline, "_warned", False)
    with caplog.at_level(logging.WARNING, logger="helpers"):
        first = classify(lite0, [IMAGES / "coffee.png"], backend="fastest")
        classify(lite0, [IMAGES / "coffee.png"], backend="fastest")
    assert first[0].predictions[0][1] == "espresso"
    assert caplog.text.count("ai-edge-litert is not installed") == 1
    with pytest.raises(RuntimeError, match="pip install ai-edge-litert"):
        predictor(lite0, "litert")
    with pytest.raises(ValueError, match="backend must be one of keras, litert, fastest"):
        predictor(lite0, "onnx")


def test_changed_weights_are_converted_again(tiny_net):
    net = tiny_net()
    batch = np.random.default_rng(2).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    before = predictor(net, "litert")(batch)
    net.model.set_weights([w * 0.5 for w in net.model.get_weights()])
    after = predictor(net, "litert")(batch)
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, net.model.predict(net.preprocess(batch), verbose=0), atol=1e-5)


def test_int8_needs_litert_calibration_photos_and_a_known_precision(tiny_net, monkeypatch):
    net = tiny_net()
    with pytest.raises(ValueError, match="precision must be one of float32, int8"):
        predictor(net, precision="float16")
    with pytest.raises(ValueError, match="runs on LiteRT only"):
        predictor(net, "keras", precision="int8", calibration=IMAGES)
    with pytest.raises(ValueError, match="pass calibration=FOLDER"):
        predictor(net, precision="int8")
    with pytest.raises(ValueError, match="pass calibration=FOLDER"):
        list(stream_batches(net, [], precision="int8"))  # even for no sources
    monkeypatch.setattr(pipeline, "litert_available", lambda: False)
    with pytest.raises(RuntimeError, match="pip install ai-edge-litert"):
        predictor(net, precision="int8", calibration=IMAGES)


def test_int8_calibrates_on_the_photos_passed_in(tiny_net, monkeypatch):
    net = tiny_net()  # its conversions go to a cache folder of this test's own
    calls = []
    convert = litert.convert
    monkeypatch.setattr(litert, "convert", lambda m, *rest: calls.append(m) or convert(m, *rest))
    crops = calibration_crops(IMAGES, net.input_size)
    photos = crops[3::9]
    expected = net.model.predict(net.preprocess(photos), verbose=0)

    from_folder = predictor(net, "litert", "int8", calibration=IMAGES)(photos)
    assert len(calls) == 1 and int8_matches(from_folder, expected)
    np.testing.assert_array_equal(predictor(net, "litert", "int8", calibration=str(IMAGES))(photos), from_folder)
    np.testing.assert_array_equal(predictor(net, "litert", "int8", calibration=list_images(IMAGES))(photos),
                                  from_folder)
    assert len(calls) == 1  # the same photos: the same conversion, in the session or from the cache

    # Other photos: another conversion, whether they come as files or as pictures in memory.
    two = [IMAGES / "coffee.png", IMAGES / "chelsea.png"]
    predictor(net, "litert", "int8", calibration=two)(photos)
    assert len(calls) == 2
    others = [load_image(IMAGES / name, dtype="uint8") for name in ("astronaut.png", "rocket.jpg")]
    predictor(net, "litert", "int8", calibration=others)(photos)
    predictor(net, "litert", "int8", calibration=[np.ascontiguousarray(p[::-1]) for p in others])(photos)
    assert len(calls) == 4
    assert len(list(litert.cache_dir().glob("tiny-*-int8-*.tflite"))) == 4


def test_bad_calibration_photos_are_not_remembered_and_a_generator_is_read_once(tiny_net, tmp_path, monkeypatch):
    net = tiny_net()
    calls = []
    convert = litert.convert
    monkeypatch.setattr(litert, "convert", lambda m, *rest: calls.append(m) or convert(m, *rest))
    photos = calibration_crops(IMAGES, net.input_size)[3::9]
    files = [tmp_path / name for name in ("astronaut.png", "coffee.png", "chelsea.png")]
    with pytest.raises(Exception, match="astronaut.png: no such file"):
        predictor(net, "litert", "int8", calibration=files)
    for path in files:  # the caller fixes the folder and calls again
        shutil.copy(IMAGES / path.name, path)
    from_list = predictor(net, "litert", "int8", calibration=files)(photos)
    from_generator = predictor(net, "litert", "int8", calibration=(path for path in files))(photos)
    np.testing.assert_array_equal(from_generator, from_list)
    assert len(calls) == 1


def test_a_calibration_folder_whose_photos_change_converts_again(tiny_net, tmp_path, monkeypatch):
    net = tiny_net()
    calls = []
    convert = litert.convert
    monkeypatch.setattr(litert, "convert", lambda m, *rest: calls.append(m) or convert(m, *rest))
    folder = tmp_path / "calibration"
    folder.mkdir()
    for name in ("astronaut.png", "coffee.png", "chelsea.png"):
        shutil.copy(IMAGES / name, folder / name)
    photos = calibration_crops(IMAGES, net.input_size)[3::9]
    predictor(net, "litert", "int8", calibration=folder)(photos)
    shutil.copy(IMAGES / "rocket.jpg", folder / "coffee.png")  # the same name, another photo
    predictor(net, "litert", "int8", calibration=folder)(photos)
    assert len(calls) == 2


def test_a_model_litert_cannot_run_falls_back_to_keras_once_per_weights(tiny_net, monkeypatch, caplog):
    net = tiny_net()
    tries = []

    def cannot(*args, **kwargs):
        tries.append(1)
        raise RuntimeError("no kernel for this op")

    monkeypatch.setattr(pipeline, "LiteRTModel", cannot)
    photos = np.zeros((2, 32, 32, 3), np.uint8)
    with caplog.at_level(logging.WARNING, logger="helpers"):
        outputs = [predictor(net)(photos) for _ in range(3)]
    assert len(tries) == 1 and "running on Keras" in caplog.text
    np.testing.assert_allclose(outputs[0], net.model.predict(net.preprocess(photos), verbose=0), atol=1e-6)
    with pytest.raises(RuntimeError, match="no kernel"):
        predictor(net, "litert")  # asked for by name: the error, not Keras
