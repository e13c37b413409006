import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from helpers import ImageLoadError, class_index, decode_predictions, list_images, load_image
from conftest import IMAGES


def test_class_index_uses_keras_style_labels():
    labels = {label for _, label in class_index()}
    assert {"Indian_elephant", "tabby", "military_uniform", "espresso"} <= labels
    assert class_index()[0] == ("n01440764", "tench")


def test_decode_predictions_best_first():
    preds = np.zeros((2, 1000), np.float32)
    preds[0, 385], preds[0, 281] = 0.7, 0.2
    preds[1, 652] = 0.9
    out = decode_predictions(preds, top=2)
    assert out[0] == [("n02504013", "Indian_elephant", pytest.approx(0.7)), ("n02123045", "tabby", pytest.approx(0.2))]
    assert out[1][0][1] == "military_uniform"


def test_load_image_center_crop_and_squash():
    crop = load_image(IMAGES / "astronaut.png", size=224)
    squash = load_image(IMAGES / "rocket.jpg", size=224, crop=None)
    assert crop.shape == squash.shape == (224, 224, 3)
    assert crop.dtype == np.float32 and 0 <= crop.min() and crop.max() <= 255


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "CMYK", "I;16", "P"])
def test_load_image_converts_modes_to_rgb(tmp_path, mode):
    rgb = Image.open(IMAGES / "coffee.png").convert("RGB").resize((64, 48))
    image = rgb.convert("L").convert("I;16") if mode == "I;16" else rgb.convert(mode)
    path = tmp_path / ("x.tif" if mode in ("CMYK", "I;16") else "x.png")
    image.save(path)
    assert load_image(path).shape == (48, 64, 3)


def test_rgba_is_composited_on_white(tmp_path):
    path = tmp_path / "clear.png"
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(path)
    assert load_image(path).min() == 255


def test_load_image_honours_exif_orientation(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    Image.new("RGB", (60, 30)).save(path, exif=exif)
    assert load_image(path).shape == (60, 30, 3)


def test_bad_inputs_raise_errors_naming_the_file(tmp_path):
    with pytest.raises(ImageLoadError, match="missing.jpg: no such file"):
        load_image(tmp_path / "missing.jpg")
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    with pytest.raises(ImageLoadError, match="notes.jpg: not an image"):
        load_image(text)
    data = (IMAGES / "rocket.jpg").read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="cut.jpg: unreadable or truncated"):
        load_image(cut)


def test_list_images_sorted_with_unicode_names(tmp_path):
    files = list_images(IMAGES)
    assert files == sorted(files)
    assert "花.jpg" in [f.name for f in files]
    with pytest.raises(FileNotFoundError, match="contains no image files"):
        list_images(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        list_images(tmp_path / "nope")


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    # A PNG header claiming 30000 x 30000 pixels: Pillow must refuse it without allocating 2.7 GB.
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0))
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))
    with pytest.raises(ImageLoadError, match="bomb.png: too large to decode safely"):
        load_image(bomb)


def test_load_image_leaves_the_callers_pil_image_alone():
    photo = Image.open(IMAGES / "rocket.jpg")  # opened, not yet decoded
    assert load_image(photo, size=64).shape == (64, 64, 3)
    assert photo.size == (640, 427)
