import json
from pathlib import Path

from helpers import edit, list_images
from support import IMAGES, run_cli
from test_similarity import SAME_SCENE


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


def test_cli_similar_ranks_a_folder_without_the_query(tmp_path):
    for name in ["chelsea.png", "coffee.png", "rocket.jpg"]:
        (tmp_path / name).write_bytes((IMAGES / name).read_bytes())
    edit(IMAGES / "chelsea.png", mirror=True).save(tmp_path / "cat_mirrored.png")
    (tmp_path / "broken.jpg").write_text("not a photo")
    run = run_cli("similar", str(tmp_path / "chelsea.png"), str(tmp_path), "--top", "2", "--json")
    assert run.returncode == 2 and "broken.jpg: not an image" in run.stderr
    ranking = json.loads(run.stdout)
    assert [Path(r["image"]).name for r in ranking][0] == "cat_mirrored.png" and len(ranking) == 2
    assert ranking[0]["score"] > 0.9 > ranking[1]["score"]
    assert "chelsea.png" not in run.stdout

    run = run_cli("similar", str(tmp_path / "nope.png"), str(tmp_path))
    assert run.returncode == 2 and "nope.png: no such file" in run.stderr


def test_cli_duplicates_json_and_threshold():
    run = run_cli("duplicates", "images", "--json")
    assert run.returncode == 0, run.stderr
    assert [{Path(p["a"]).name, Path(p["b"]).name} for p in json.loads(run.stdout)] == SAME_SCENE
    run = run_cli("duplicates", "images", "--threshold", "0.95", "--fast")
    assert run.stdout.splitlines() == ["1.000  images/flower.jpg  images/花.jpg"]
    run = run_cli("duplicates", "images", "--model", "vgg16")
    assert run.returncode == 2 and "vgg16 has no calibrated near-duplicate threshold: pass --threshold" in run.stderr
    run = run_cli("duplicates", "images", "--model", "vgg16", "--threshold", "0.8")
    assert run.returncode == 2 and "no calibrated floor for the keypoint check: pass --floor" in run.stderr


def test_cli_duplicates_finds_heavily_edited_copies_unless_fast(tmp_path):
    for name in ["chelsea.png", "coffee.png", "rocket.jpg"]:
        (tmp_path / name).write_bytes((IMAGES / name).read_bytes())
    edit(IMAGES / "coffee.png", keep=0.55, rotate=7, grayscale=True).save(tmp_path / "coffee_tilted.jpg")
    (tmp_path / "broken.jpg").write_text("not a photo")
    run = run_cli("duplicates", str(tmp_path), "--json")
    assert run.returncode == 2 and "broken.jpg: not an image" in run.stderr
    assert [{Path(p["a"]).name, Path(p["b"]).name} for p in json.loads(run.stdout)] == [
        {"coffee.png", "coffee_tilted.jpg"}]
    run = run_cli("duplicates", str(tmp_path), "--fast", "--json")
    assert run.returncode == 2 and json.loads(run.stdout) == []  # the vectors alone miss it


def test_cli_explain_writes_an_overlay_png(tmp_path):
    from PIL import Image

    out = tmp_path / "coffee_gradcam.png"
    run = run_cli("explain", str(IMAGES / "coffee.png"), "--class", "espresso", "-o", str(out))
    assert run.returncode == 0, run.stderr
    assert "gradcam for 'espresso'" in run.stdout
    assert Image.open(out).size == Image.open(IMAGES / "coffee.png").size
    run = run_cli("explain", str(IMAGES / "coffee.png"), "--class", "expresso", "-o", str(out))
    assert run.returncode == 2 and "did you mean 'espresso'" in run.stderr


def test_cli_backend_option():
    run = run_cli("classify", str(IMAGES / "coffee.png"), "--top", "1", "--backend", "keras")
    assert run.returncode == 0 and "espresso" in run.stdout
    assert run_cli("classify", str(IMAGES / "coffee.png"), "--backend", "onnx").returncode == 2


def test_cli_precision_option():
    runs = {precision: run_cli("classify", str(IMAGES / "coffee.png"), "--top", "1", "--json", "--precision", precision)
            for precision in ("int8", "float32")}
    scores = {precision: json.loads(run.stdout)[0]["predictions"][0] for precision, run in runs.items()}
    assert scores["int8"]["label"] == scores["float32"]["label"] == "espresso", runs["int8"].stderr
    assert abs(scores["int8"]["score"] - scores["float32"]["score"]) > 1e-4  # int8 really ran: not the same numbers
    run = run_cli("classify", str(IMAGES / "coffee.png"), "--precision", "int8", "--backend", "keras")
    assert run.returncode == 2 and "runs on LiteRT only" in run.stderr
    run = run_cli("duplicates", "images", "--precision", "int8")
    assert run.returncode == 2 and "calibrated on float32 features" in run.stderr
    run = run_cli("duplicates", "images", "--precision", "int8", "--threshold", "0.95")
    assert run.returncode == 2 and "pass --threshold and --floor (or --fast)" in run.stderr
    run = run_cli("duplicates", "images", "--precision", "int8", "--threshold", "0.95", "--fast", "--json")
    assert run.returncode == 0 and len(json.loads(run.stdout)) == 1  # flower.jpg and its copy


def test_cli_int8_without_calibration_photos_asks_for_them(monkeypatch, tmp_path):
    from helpers import cli

    monkeypatch.setattr(cli, "PROJECT_PHOTOS", tmp_path / "no-images")  # installed without the project's photos
    run = run_cli("classify", str(IMAGES / "coffee.png"), "--precision", "int8")
    assert run.returncode == 2 and "pass --calibration FOLDER" in run.stderr
    run = run_cli("classify", str(IMAGES / "coffee.png"), "--top", "1", "--precision", "int8",
                  "--calibration", str(IMAGES))
    assert run.returncode == 0 and "espresso" in run.stdout
