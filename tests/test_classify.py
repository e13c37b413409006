from pathlib import Path

import pytest

from helpers import classify, list_images
from conftest import DEV, IMAGES


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


@pytest.mark.skipif(not DEV.is_dir(), reason="dev data ../shared/data/imagenet-sample-dev is absent")
@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_dev_set_accuracy_from_files(lite0, precision):
    files = sorted(DEV.glob("*.JPEG"))
    results = classify(lite0, files, precision=precision)
    truth = [Path(f).name[:9] for f in files]
    top1 = sum(r.predictions[0][0] == t for r, t in zip(results, truth)) / len(files)
    top5 = sum(t in [w for w, _, _ in r.predictions] for r, t in zip(results, truth)) / len(files)
    print(f"dev set, {precision}: top-1 {top1:.3f}, top-5 {top5:.3f} on {len(files)} photos")
    assert top1 >= 0.85 and top5 >= 0.95


def test_int8_classifies_files_like_float32(lite0):
    photos = [IMAGES / "coffee.png", *list_images(IMAGES / "animals")]
    small, fast = classify(lite0, photos, top=1, precision="int8"), classify(lite0, photos, top=1)
    assert small[0].predictions[0][1] == "espresso" and not any(r.error for r in small)
    same = [s.predictions[0][0] == f.predictions[0][0] for s, f in zip(small, fast)]
    assert sum(same) >= 0.9 * len(photos)
    # int8 really ran: its probabilities are not float32's.
    assert any(abs(s.predictions[0][2] - f.predictions[0][2]) > 1e-4 for s, f in zip(small, fast))
    with pytest.raises(ValueError, match="runs on LiteRT only"):
        classify(lite0, photos[:1], backend="keras", precision="int8")
