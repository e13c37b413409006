from pathlib import Path

import numpy as np
import pytest

from helpers import classify, list_images, load_model, model_spec
from support import DEV, IMAGES, needs_dev, check_models


def test_classify_keeps_order_and_survives_bad_files(lite0, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_text("not a photo")
    sources = [IMAGES / "coffee.png", broken, tmp_path / "missing.png", IMAGES / "chelsea.png"]
    results = classify(lite0, sources, batch_size=2)
    assert [r.source for r in results] == [str(s) for s in sources]
    assert results[0].predictions[0][1] == "espresso" and results[0].error is None
    assert "broken.jpg" in results[1].error and results[1].predictions == []
    assert "missing.png: no such file" in results[2].error
    assert results[3].predictions[0][1] in {"tabby", "tiger_cat", "Egyptian_cat"}
    assert len(results[3].predictions) == 5


@pytest.fixture(scope="module")
def dev_set(lite0):
    """Each dev photo's class, and classify's top 5 for every photo, from its file, per precision."""
    files = sorted(DEV.glob("*.JPEG"))
    truth = [Path(f).name[:9] for f in files]
    # The engine's route, as the command line takes: float32 on LiteRT, int8 calibrated on images/.
    return truth, {precision: classify(lite0, files, backend="litert", precision=precision, calibration=IMAGES)
                   for precision in ("float32", "int8")}


def _accuracy(results, truth, k):
    return sum(t in [w for w, _, _ in r.predictions[:k]] for r, t in zip(results, truth)) / len(truth)


@needs_dev
@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_dev_set_accuracy_from_files(dev_set, precision):
    truth, results = dev_set
    top1, top5 = _accuracy(results[precision], truth, 1), _accuracy(results[precision], truth, 5)
    print(f"dev set, {precision}: top-1 {top1:.3f}, top-5 {top5:.3f} on {len(truth)} photos")
    assert top1 >= 0.85 and top5 >= 0.95


@needs_dev
def test_the_registry_confidence_threshold_accepts_95_percent_of_the_dev_set(dev_set):
    # benchmarks/calibration.py chose it on Keras' probabilities; LiteRT's float32 are the same to 1e-3.
    _, results = dev_set
    threshold = model_spec("efficientnet_lite0").confidence_threshold
    accepted = sum(r.predictions[0][2] >= threshold for r in results["float32"]) / len(results["float32"])
    assert 0.94 <= accepted <= 0.96


@needs_dev
@pytest.mark.parametrize("name", [pytest.param(name, marks=check_models)
                                  for name in ("efficientnet_lite1", "efficientnet_lite2")])
def test_other_models_confidence_thresholds_accept_95_percent_of_the_dev_set(name):
    results = classify(load_model(name), sorted(DEV.glob("*.JPEG")), top=1, backend="litert")
    accepted = sum(r.predictions[0][2] >= model_spec(name).confidence_threshold for r in results) / len(results)
    assert 0.94 <= accepted <= 0.96


@needs_dev
def test_int8_is_within_a_point_of_float32_on_the_dev_set(dev_set):
    truth, results = dev_set
    accuracy = {precision: _accuracy(r, truth, 1) for precision, r in results.items()}
    agree = sum(s.predictions[0][0] == f.predictions[0][0]
                for s, f in zip(results["int8"], results["float32"])) / len(truth)
    print(f"dev top-1 float32 {accuracy['float32']:.3f}, int8 {accuracy['int8']:.3f}, agreement {agree:.3f}")
    assert accuracy["int8"] >= accuracy["float32"] - 0.01 and agree >= 0.97


def test_int8_classifies_files_on_litert_only(lite0):
    # How often int8 and float32 agree: test_engine_litert, on the animal photos decoded once.
    photos = [IMAGES / "coffee.png", *list_images(IMAGES / "animals")]
    small = classify(lite0, photos, top=1, precision="int8", calibration=IMAGES)
    plain = classify(lite0, photos, top=1)
    assert small[0].predictions[0][1] == "espresso" and not any(r.error for r in small)
    # int8 really ran: its probabilities are not float32's.
    assert any(abs(s.predictions[0][2] - f.predictions[0][2]) > 1e-4 for s, f in zip(small, plain))
    with pytest.raises(ValueError, match="runs on LiteRT only"):
        classify(lite0, photos[:1], backend="keras", precision="int8", calibration=IMAGES)
    with pytest.raises(ValueError, match="calibration=FOLDER"):
        classify(lite0, photos[:1], precision="int8")


def test_classify_runs_the_keras_model_unless_asked(lite0, monkeypatch):
    from helpers import engine

    def engine_called(*args, **kwargs):
        raise AssertionError("the engine ran")

    monkeypatch.setattr(engine, "stream_batches", engine_called)
    photos = [IMAGES / "coffee.png", IMAGES / "chelsea.png"]
    results = classify(lite0, photos, top=1)
    assert results[0].predictions[0][1] == "espresso"
    # What the lesson computes by hand: the centre crop, then Keras' predict.
    from helpers import decode_predictions, load_image

    batch = np.stack([load_image(p, size=lite0.input_size) for p in photos])
    expected = decode_predictions(lite0.model.predict(lite0.preprocess(batch), verbose=0), top=1)
    assert [r.predictions for r in results] == expected
    with pytest.raises(AssertionError, match="the engine ran"):
        classify(lite0, photos, backend="fastest")
