import json
from pathlib import Path

import pytest

from helpers import classify, list_images
from conftest import DEV, IMAGES, run_cli


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


def test_cli_json_and_exit_status(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG broken")
    run = run_cli("classify", str(IMAGES / "coffee.png"), str(bad), "--json", "--top", "3")
    assert run.returncode == 2
    out = json.loads(run.stdout)
    assert out[0]["predictions"][0]["label"] == "espresso" and out[0]["error"] is None
    assert len(out[0]["predictions"]) == 3
    assert out[1]["predictions"] == [] and "bad.png" in out[1]["error"]
    assert "bad.png" in run.stderr


def test_cli_classifies_a_folder():
    run = run_cli("classify", "images", "--top", "1")
    assert run.returncode == 0, run.stderr
    assert "coffee.png\n  1. espresso" in run.stdout
    assert run.stdout.count("  1. ") == len(list_images(IMAGES))


@pytest.mark.skipif(not DEV.is_dir(), reason="dev data ../shared/data/imagenet-sample-dev is absent")
def test_dev_set_accuracy_from_files(lite0):
    files = sorted(DEV.glob("*.JPEG"))
    results = classify(lite0, files)
    truth = [Path(f).name[:9] for f in files]
    top1 = sum(r.predictions[0][0] == t for r, t in zip(results, truth)) / len(files)
    top5 = sum(t in [w for w, _, _ in r.predictions] for r, t in zip(results, truth)) / len(files)
    print(f"dev set: top-1 {top1:.3f}, top-5 {top5:.3f} on {len(files)} photos")
    assert top1 >= 0.85 and top5 >= 0.95
