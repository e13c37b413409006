import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from helpers import ImageLoadError, list_images, load_image, overlay
from helpers.images import load_images
from support import IMAGES


def test_load_image_center_crop_and_squash():
    # A wide picture: a red quarter, a green half, a blue quarter.
    wide = np.zeros((100, 200, 3), np.uint8)
    wide[:, :50, 0], wide[:, 50:150, 1], wide[:, 150:, 2] = 255, 255, 255
    crop = load_image(wide, size=90)
    squash = load_image(wide, size=90, crop_fraction=None)
    assert crop.shape == squash.shape == (90, 90, 3) and crop.dtype == np.float32
    # The crop keeps the middle of the long side (the green), the squash all of it.
    np.testing.assert_allclose(crop[..., 1], 255)
    np.testing.assert_allclose(crop[..., [0, 2]], 0)
    assert squash[:, 0].tolist() == [[255, 0, 0]] * 90 and squash[:, -1].tolist() == [[0, 0, 255]] * 90


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


def test_a_big_jpeg_is_decoded_at_a_reduced_scale_to_nearly_the_same_pixels(tmp_path):
    # A phone-sized photo: the JPEG decoder skips to 1/8 scale (draft), which must not
    # change what the model sees beyond rounding. A PIL image from the caller is decoded
    # at full size, so it gives the reference.
    Image.open(IMAGES / "rocket.jpg").resize((3840, 2562), Image.BICUBIC).save(tmp_path / "big.jpg", quality=95)
    drafted = load_image(tmp_path / "big.jpg", size=224)
    full = load_image(Image.open(tmp_path / "big.jpg"), size=224)
    assert not np.array_equal(drafted, full)  # the draft really happened
    assert np.abs(drafted - full).mean() < 2.5  # 1.9 here: the two anti-alias edges a little differently


def test_load_image_as_uint8():
    as_bytes = load_image(IMAGES / "rocket.jpg", size=224, dtype="uint8")
    assert as_bytes.dtype == np.uint8 and as_bytes.flags.writeable
    np.testing.assert_array_equal(as_bytes, load_image(IMAGES / "rocket.jpg", size=224))
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'uint8'"):
        load_image(IMAGES / "rocket.jpg", dtype="float64")


def test_overlay_blends_into_uint8_and_checks_the_size():
    image = np.full((20, 30, 3), 200, np.float32)
    heatmap = np.zeros((20, 30), np.float32)
    blended = overlay(image, heatmap, alpha=0.0)
    assert blended.dtype == np.uint8 and blended.shape == (20, 30, 3)
    np.testing.assert_array_equal(blended, 200)
    assert not np.array_equal(overlay(image, heatmap + 1, alpha=0.5), overlay(image, heatmap, alpha=0.5))
    with pytest.raises(ValueError, match="heatmap of shape \\(7, 7\\) does not fit an image of shape \\(20, 30, 3\\)"):
        overlay(image, np.zeros((7, 7)))


def test_load_images_gives_one_batch_and_one_error_per_source(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_text("not a photo")
    photos, errors = load_images([IMAGES / "coffee.png", broken, IMAGES / "chelsea.png"], size=(32, 48))
    assert photos.shape == (2, 32, 48, 3) and photos.dtype == np.uint8
    np.testing.assert_array_equal(photos[1], load_image(IMAGES / "chelsea.png", size=(32, 48), dtype="uint8"))
    assert errors[0] is None and errors[2] is None and "broken.png" in errors[1]
    assert load_images([broken], size=32) == (None, [errors[1]])


def test_edit_keeps_its_light_edits():
    from helpers import edit

    assert edit(IMAGES / "coffee.png", keep=0.5, scale=0.5).size == (150, 100)
    np.testing.assert_array_equal(np.asarray(edit(IMAGES / "coffee.png")), load_image(IMAGES / "coffee.png"))


def test_edit_crops_where_position_says():
    from helpers import edit

    photo = load_image(IMAGES / "coffee.png")  # 400 x 600
    for position, (top, left) in {(0, 0): (0, 0), (1, 1): (200, 300), (0.5, 0.5): (100, 150)}.items():
        crop = np.asarray(edit(IMAGES / "coffee.png", keep=0.5, position=position))
        np.testing.assert_array_equal(crop, photo[top:top + 200, left:left + 300])


def test_edit_rotate_grayscale_caption_watermark():
    from helpers import edit

    turned = edit(IMAGES / "coffee.png", rotate=10)
    assert 0.7 < turned.width / 600 < 0.9 and abs(turned.width / turned.height - 1.5) < 0.02
    assert np.asarray(turned)[[0, -1]][:, [0, -1]].min() > 0  # no empty corner left by the turn
    gray = np.asarray(edit(IMAGES / "coffee.png", grayscale=True)).astype(int)
    assert gray.shape == (400, 600, 3) and (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    captioned = np.asarray(edit(IMAGES / "coffee.png", caption="hello"))
    assert captioned.shape == (466, 600, 3) and captioned[400:].min() == 0 and captioned[400:, -1].min() == 255
    marked = np.asarray(edit(IMAGES / "coffee.png", watermark="hello")).astype(int)
    changed = np.abs(marked - load_image(IMAGES / "coffee.png")).sum(axis=-1) > 0
    assert marked.shape == (400, 600, 3) and changed[150:250].mean() > 0.05 and not changed[:50].any()


@pytest.mark.parametrize("arguments, message", [
    ({"keep": 0}, "keep must be in"), ({"scale": -1}, "scale must be positive"), ({"rotate": 90}, "rotate must be in"),
    ({"position": (0.5, 2)}, "position must be"), ({"jpeg_quality": 0}, "jpeg_quality must be in")])
def test_edit_names_the_bad_argument(arguments, message):
    from helpers import edit

    with pytest.raises(ValueError, match=message):
        edit(IMAGES / "coffee.png", **arguments)


def test_heavy_edits_are_varied_seeded_and_labelled():
    from helpers.images import HEAVY_EDIT_KINDS, heavy_copies, heavy_edit

    drawn = [heavy_edit("crop", np.random.default_rng(0)) for _ in range(2)]
    assert drawn[0] == drawn[1] and 0.55 <= drawn[0]["keep"] <= 0.65
    rng = np.random.default_rng(0)
    crops = [heavy_edit("crop", rng) for _ in range(20)]
    assert len({c["position"] for c in crops}) == 20
    angles = [heavy_edit("rotate", rng)["rotate"] for _ in range(50)]
    assert all(3 <= abs(a) <= 10 for a in angles) and min(angles) < 0 < max(angles)
    assert all(len(heavy_edit("combo", rng)) >= 3 for _ in range(10))  # two or three edits and a JPEG quality
    with pytest.raises(ValueError, match="kind must be one of crop"):
        heavy_edit("blur", rng)
    files = [IMAGES / "coffee.png", IMAGES / "chelsea.png"]
    sources, photo_ids, kinds = heavy_copies(files, seed=3)
    assert len(sources) == len(photo_ids) == len(kinds) == 2 * (1 + 2 + len(HEAVY_EDIT_KINDS))
    assert kinds[:6] == ["original"] * 2 + ["light"] * 4 and kinds[-1] == "combo" and photo_ids[-1] == 1
    again, _, _ = heavy_copies(files, seed=3)
    np.testing.assert_array_equal(np.asarray(sources[-1]), np.asarray(again[-1]))
