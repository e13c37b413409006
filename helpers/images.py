"""Loading photos as RGB arrays (with errors that name the file), editing them, blending a heatmap on one."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Sequence, Union

import numpy as np
from PIL import ExifTags, Image, ImageDraw, ImageEnhance, ImageFont, ImageOps, UnidentifiedImageError

# What every function that takes "a photo" accepts: a file path, a PIL image, or an
# (h, w, 3) RGB array with values 0-255.
ImageSource = Union[str, os.PathLike, Image.Image, np.ndarray]
# Photos int8 calibrates on: a folder, or a list of photos.
Calibration = Union[str, os.PathLike, Sequence[ImageSource]]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
CROP_FRACTION = 0.875  # resize the shorter side to size / 0.875 (256 for 224), then crop
# The views ``crop_views`` cuts: the centre crop, its mirror image, and the four corner crops.
VIEWS = ("center", "mirror", "top_left", "top_right", "bottom_left", "bottom_right")
# The copies users' collections hold, as the registry's near-duplicate thresholds were calibrated on
# (benchmarks/near_duplicate_threshold.py): keyword arguments of ``edit``, one dict per copy.
NEAR_DUPLICATE_EDITS = ({"mirror": True, "keep": 0.85, "jpeg_quality": 60}, {"brightness": 1.3, "scale": 0.5})
# The heavy edits of shared photos (``heavy_edit`` draws one of a kind): a tight crop anywhere in the
# frame, a straightened tilt, grayscale, a caption bar, a text watermark, a small copy, and a mix of them.
HEAVY_EDIT_KINDS = ("crop", "rotate", "grayscale", "caption", "watermark", "small", "combo")


class ImageLoadError(Exception):
    """An image could not be loaded; the message names the file and the reason."""


def _open(source, draft: tuple[int, int] | None = None) -> Image.Image:
    """Open and decode a file; ``draft``: the smallest (w, h) the caller needs, which lets
    the JPEG decoder decode at 1/2, 1/4 or 1/8 scale (a 12-megapixel photo in a tenth
    of the time). It must come before ``load``, which decodes."""
    path = Path(source)
    if not path.exists():
        raise ImageLoadError(f"{path}: no such file")
    if path.is_dir():
        raise ImageLoadError(f"{path}: is a folder, not an image (use list_images for folders)")
    try:
        image = Image.open(path)
        if draft is not None:
            image.draft("RGB", draft)
        image.load()
    except UnidentifiedImageError:
        raise ImageLoadError(f"{path}: not an image Pillow can read") from None
    except Image.DecompressionBombError as e:
        raise ImageLoadError(f"{path}: too large to decode safely ({e}); shrink it first, "
                             "or raise PIL.Image.MAX_IMAGE_PIXELS if you trust the file") from None
    except OSError as e:
        raise ImageLoadError(f"{path}: unreadable or truncated ({e})") from None
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    # Transpose and convert only when needed: each makes a full-size copy otherwise.
    if image.getexif().get(ExifTags.Base.Orientation, 1) != 1:
        image = ImageOps.exif_transpose(image)
    if image.mode == "I;16" or image.mode in ("I", "F"):
        image = Image.fromarray((np.asarray(image, dtype=np.float64) / 256).clip(0, 255).astype(np.uint8))
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return image if image.mode == "RGB" else image.convert("RGB")


def center_box(photo_size: tuple[int, int], size: tuple[int, int],
               crop_fraction: float = CROP_FRACTION) -> tuple[float, float, float, float]:
    """The box (left, top, right, bottom) of a photo of ``photo_size`` (w, h) that ``load_image``
    keeps for ``size`` (h, w): the centre of the photo with its shorter side resized to
    max(h, w) / crop_fraction, in the photo's own pixels.

    >>> center_box((512, 256), (224, 224))
    (144.0, 16.0, 368.0, 240.0)
    """
    (width, height), (h, w) = photo_size, size
    ratio = max(h, w) / crop_fraction / min(width, height)
    resized_w, resized_h = max(w, round(width * ratio)), max(h, round(height * ratio))
    sx, sy = width / resized_w, height / resized_h
    left, top = (resized_w - w) // 2, (resized_h - h) // 2
    return left * sx, top * sy, (left + w) * sx, (top + h) * sy


def crop_views(photo: np.ndarray, size: tuple[int, int], views: Sequence[str] = VIEWS) -> np.ndarray:
    """Crops of ``size`` from a larger photo: its centre, the centre mirrored left to right, its corners.

    Args:
        photo: (H, W, 3), at least ``size``.
        size: (h, w) of each crop.
        views: names from ``VIEWS``.

    Returns:
        (len(views), h, w, 3), the photo's dtype.

    >>> crop_views(np.zeros((256, 256, 3)), (224, 224), ["center", "mirror"]).shape
    (2, 224, 224, 3)
    """
    (height, width), (h, w) = photo.shape[:2], size
    unknown = [view for view in views if view not in VIEWS]
    if unknown or not views:
        raise ValueError(f"views must be one or more of {', '.join(VIEWS)}; got {list(views)}")
    if height < h or width < w:
        raise ValueError(f"photo of {height}x{width} is smaller than the crops, {h}x{w}")
    centre = ((height - h) // 2, (width - w) // 2)
    corners = {"center": centre, "mirror": centre, "top_left": (0, 0), "top_right": (0, width - w),
               "bottom_left": (height - h, 0), "bottom_right": (height - h, width - w)}
    crops = [photo[corners[v][0]:corners[v][0] + h, corners[v][1]:corners[v][1] + w] for v in views]
    return np.stack([crop[:, ::-1] if view == "mirror" else crop for view, crop in zip(views, crops)])


def load_image(source: ImageSource, size: int | tuple[int, int] | None = None,
               crop_fraction: float | None = CROP_FRACTION, dtype: str = "float32") -> np.ndarray:
    """Load a photo as an RGB array (h, w, 3) with values in 0-255.

    Args:
        source: a path (str or Path), a PIL image or an array (h, w, 3).
        size: output size (an int for a square, or (h, w)); None keeps the size.
        crop_fraction: the centre crop keeps this share of the shorter side: it is
            resized to size / crop_fraction (256 for 224 and 0.875) and the centre
            taken; None squashes the whole photo to ``size``.
        dtype: "float32", or "uint8" for a quarter of the memory (the batch helpers
            stack uint8 photos and convert the batch once).

    Raises:
        ImageLoadError: missing, not an image, truncated, too large, unreadable.

    >>> load_image("images/coffee.png", size=224).shape
    (224, 224, 3)
    """
    if crop_fraction is not None and not 0 < crop_fraction <= 1:
        raise ValueError(f"crop_fraction must be in (0, 1] or None (no crop), got {crop_fraction!r}")
    if dtype not in ("float32", "uint8"):
        raise ValueError(f"dtype must be 'float32' or 'uint8', got {dtype!r}")
    h, w = (size, size) if isinstance(size, int) else size or (None, None)
    if isinstance(source, np.ndarray):
        array = np.asarray(source)
        if array.ndim == 2:
            array = np.stack([array] * 3, axis=-1)
        if array.ndim != 3 or array.shape[-1] != 3:
            raise ImageLoadError(f"array of shape {array.shape}: expected (h, w, 3) RGB")
        image = Image.fromarray(array.clip(0, 255).astype(np.uint8))
    elif isinstance(source, Image.Image):
        image = source  # never changed in place: every step below makes a new image
    else:
        cropped = size is not None and crop_fraction is not None
        shorter = math.ceil(max(h, w) / crop_fraction) if cropped else None
        image = _open(source, draft=(shorter, shorter) if shorter else None)
    image = _to_rgb(image)
    if size is not None and crop_fraction is not None:
        # Resize the shorter side to size / crop_fraction, then take the center (w, h). Resampling
        # only that box gives the pixels of resizing the whole photo and cropping (+-1 in
        # 2% of the values, from rounding) in 60% of the time. Above a factor of 6 (big
        # PNGs: JPEGs arrive drafted), a cheap box reduction first bounds the cost.
        image = image.resize((w, h), Image.BILINEAR, box=center_box(image.size, (h, w), crop_fraction),
                             reducing_gap=3.0)
    elif size is not None:
        image = image.resize((w, h), Image.BILINEAR, reducing_gap=3.0)
    return np.asarray(image, dtype=np.float32) if dtype == "float32" else np.array(image)


def load_images(sources: Sequence[ImageSource], size: int | tuple[int, int],
                crop_fraction: float | None = CROP_FRACTION) -> tuple[np.ndarray | None, list[str | None]]:
    """Load many photos as one batch, one error per source instead of an exception.

    Returns:
        The photos that loaded, as uint8 (n, h, w, 3) (None when none did), and per
        source None or the ``ImageLoadError`` message naming the file.

    >>> photos, errors = load_images(["images/coffee.png", "images/missing.png"], size=224)
    >>> photos.shape, errors
    ((1, 224, 224, 3), [None, 'images/missing.png: no such file'])
    """
    photos, errors = [], []
    for source in sources:
        try:
            # uint8: a quarter of the bytes of float32 to copy, and an int8 model's very input.
            photos.append(load_image(source, size, crop_fraction, dtype="uint8"))
            errors.append(None)
        except ImageLoadError as e:
            errors.append(str(e))
    return (np.stack(photos) if photos else None), errors


def source_name(source: ImageSource) -> str:
    """How results name a source: its path, or ``<ndarray>`` / ``<Image>`` for pictures in memory.

    >>> source_name("images/coffee.png"), source_name(np.zeros((2, 2, 3)))
    ('images/coffee.png', '<ndarray>')
    """
    return str(source) if isinstance(source, (str, os.PathLike)) else f"<{type(source).__name__}>"


def list_images(folder) -> list[Path]:
    """The image files in ``folder``, sorted by name (unicode names included).

    >>> list_images("images")[0].name
    'astronaut.png'
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{folder}: contains no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def mosaic(sources: Sequence[ImageSource], grid: tuple[int, int] = (2, 2), tile: int = 112) -> np.ndarray:
    """Tile photos into one float32 RGB image, row by row, each center-cropped to ``tile``.

    Useful to test an explanation: does Grad-CAM for "espresso" point at the coffee tile?

    >>> mosaic(["images/chelsea.png", "images/coffee.png", "images/rocket.jpg",
    ...         "images/motorcycle_left.png"]).shape
    (224, 224, 3)
    """
    rows, cols = grid
    if rows < 1 or cols < 1:
        raise ValueError(f"grid must have at least one row and one column, got {grid}")
    sources = list(sources)
    if len(sources) != rows * cols:
        raise ValueError(f"a {rows}x{cols} mosaic needs {rows * cols} images, got {len(sources)}")
    tiles = [load_image(s, size=tile) for s in sources]
    return np.concatenate([np.concatenate(tiles[r * cols:(r + 1) * cols], axis=1) for r in range(rows)], axis=0)


def edit(source: ImageSource, mirror: bool = False, keep: float = 1.0, brightness: float = 1.0, scale: float = 1.0,
         jpeg_quality: int | None = None, rotate: float = 0.0, position: tuple[float, float] = (0.5, 0.5),
         grayscale: bool = False, caption: str | None = None, watermark: str | None = None) -> Image.Image:
    """An edited copy of a photo, to make near-duplicates: what users' collections hold.

    The steps run in this order: mirror, rotate, crop, grayscale, brightness, caption,
    watermark, scale, JPEG.

    Args:
        source: anything ``load_image`` accepts.
        mirror: flip left to right.
        keep: keep this fraction of the width and height (0-1]: a crop.
        brightness: multiply the brightness (1.3 is 30% brighter).
        scale: resize by this factor (0.5 halves width and height).
        jpeg_quality: recompress as JPEG at this quality (1-95).
        rotate: turn by this many degrees anticlockwise (-45 to 45), then crop to the largest
            centred box of the photo's shape with no empty corner, as a "straighten" tool does.
        position: where the crop sits, (x, y) each 0-1: 0 at the left (top) edge, 0.5 centred,
            1 at the right (bottom) edge.
        grayscale: drop the colour (the copy stays RGB).
        caption: write this text on a white bar below the photo (the copy grows by the bar).
        watermark: write this text in half-transparent white across the middle.

    >>> edit("images/coffee.png", mirror=True, keep=0.8, jpeg_quality=60).size
    (480, 320)
    >>> edit("images/coffee.png", rotate=-5, keep=0.6, position=(0, 1), grayscale=True, caption="Monday!").size
    (319, 248)
    """
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    if not -45 <= rotate <= 45:
        raise ValueError(f"rotate must be in [-45, 45] degrees, got {rotate}")
    if len(position) != 2 or not all(0 <= p <= 1 for p in position):
        raise ValueError(f"position must be (x, y), each in [0, 1], got {position}")
    if jpeg_quality is not None and not 1 <= jpeg_quality <= 95:
        raise ValueError(f"jpeg_quality must be in [1, 95] or None, got {jpeg_quality}")
    image = Image.fromarray(load_image(source).astype(np.uint8))
    if mirror:
        image = ImageOps.mirror(image)
    if rotate:
        image = _straighten(image, rotate)
    if keep < 1:
        w, h = round(image.width * keep), round(image.height * keep)
        # Rounded down, as the centred crop always was: the registry's thresholds were calibrated on it.
        left, top = math.floor((image.width - w) * position[0]), math.floor((image.height - h) * position[1])
        image = image.crop((left, top, left + w, top + h))
    if grayscale:
        image = image.convert("L").convert("RGB")
    if brightness != 1:
        image = ImageEnhance.Brightness(image).enhance(brightness)
    if caption:
        image = _caption(image, caption)
    if watermark:
        image = _watermark(image, watermark)
    if scale != 1:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BILINEAR)
    if jpeg_quality is not None:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=jpeg_quality)
        image = Image.open(buffer)
        image.load()
    return image


def _straighten(image: Image.Image, degrees: float) -> Image.Image:
    """Rotate, then keep the largest centred box of the same shape inside the turned photo."""
    w, h = image.size
    cos, sin = abs(math.cos(math.radians(degrees))), abs(math.sin(math.radians(degrees)))
    factor = min(w / (w * cos + h * sin), h / (w * sin + h * cos))
    cw, ch = round(w * factor), round(h * factor)
    turned = image.rotate(degrees, resample=Image.BICUBIC)
    left, top = (w - cw) // 2, (h - ch) // 2
    return turned.crop((left, top, left + cw, top + ch))


def _caption(image: Image.Image, text: str) -> Image.Image:
    """The photo above a white bar a sixth of its height, with ``text`` in black on it."""
    bar = max(12, image.height // 6)
    framed = Image.new("RGB", (image.width, image.height + bar), (255, 255, 255))
    framed.paste(image, (0, 0))
    font = ImageFont.load_default(size=max(8, bar * 3 // 5))
    ImageDraw.Draw(framed).text((bar // 4, image.height + bar // 2), text, fill=(0, 0, 0), font=font, anchor="lm")
    return framed


def _watermark(image: Image.Image, text: str) -> Image.Image:
    """``text`` in half-transparent white, as wide as about 3/4 of the photo, across its middle."""
    font = ImageFont.load_default(size=max(8, image.height // 8))
    width = max(1.0, ImageDraw.Draw(image).textlength(text, font=font))
    font = ImageFont.load_default(size=max(8, round(font.size * 0.75 * image.width / width)))
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    ImageDraw.Draw(layer).text((image.width / 2, image.height / 2), text, fill=(255, 255, 255, 128), font=font,
                               anchor="mm", stroke_width=max(1, font.size // 20), stroke_fill=(0, 0, 0, 96))
    return Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB")


def heavy_edit(kind: str, rng: np.random.Generator) -> dict:
    """Keyword arguments of ``edit`` for one heavy edit of ``kind``, drawn with ``rng``.

    Each kind draws its own strength and a JPEG quality of 50-90, the way a shared
    photo is recompressed: "crop" keeps 55-65% of the width and height anywhere in the
    frame; "rotate" tilts 3-10 degrees either way; "grayscale"; "caption" adds a bar of
    text below; "watermark" writes text across; "small" is 25-50% of the size; "combo"
    mixes two or three of these.

    Args:
        kind: one of ``HEAVY_EDIT_KINDS``.
        rng: a NumPy random generator, e.g. ``np.random.default_rng(0)``.

    >>> from helpers.images import heavy_edit
    >>> sorted(heavy_edit("crop", np.random.default_rng(0)))
    ['jpeg_quality', 'keep', 'position']
    """
    if kind not in HEAVY_EDIT_KINDS:
        raise ValueError(f"kind must be one of {', '.join(HEAVY_EDIT_KINDS)}; got {kind!r}")
    words = ("holiday", "Monday mood", "@friend_2024", "best day ever", "(c) Photo Club", "lol", "shared via app")
    draws = {
        "crop": lambda: {"keep": float(rng.uniform(0.55, 0.65)), "position": tuple(rng.uniform(0, 1, 2).tolist())},
        "rotate": lambda: {"rotate": float(rng.uniform(3, 10) * rng.choice([-1, 1]))},
        "grayscale": lambda: {"grayscale": True},
        "caption": lambda: {"caption": str(rng.choice(words))},
        "watermark": lambda: {"watermark": str(rng.choice(words))},
        "small": lambda: {"scale": float(rng.uniform(0.25, 0.5))},
    }
    if kind == "combo":
        edits = {}
        for part in rng.choice(list(draws), size=int(rng.integers(2, 4)), replace=False):
            edits.update(draws[str(part)]())
    else:
        edits = draws[kind]()
    return {**edits, "jpeg_quality": int(rng.integers(50, 91))}


def overlay(image: ImageSource, heatmap: np.ndarray, alpha: float = 0.4, colormap: str = "jet") -> np.ndarray:
    """Blend a heatmap over an image: a picture to show or save (``PIL.Image.fromarray(...).save``).

    Args:
        image: a path, PIL image or array (h, w, 3) 0-255.
        heatmap: float array (h, w) in 0-1, as the explainers return.
        alpha: weight of the heatmap colours, 0 (image only) to 1 (heatmap only).
        colormap: a matplotlib colormap name.

    Returns:
        uint8 array (h, w, 3).

    >>> overlay("images/coffee.png", np.ones((400, 600))).shape
    (400, 600, 3)
    """
    from matplotlib import colormaps  # here: decoding photos needs no plotting library

    pixels = load_image(image)
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if heatmap.shape != pixels.shape[:2]:
        raise ValueError(f"heatmap of shape {heatmap.shape} does not fit an image of shape {pixels.shape}: "
                         "pass the image the heatmap was computed for")
    colours = colormaps[colormap](np.clip(heatmap, 0, 1))[..., :3] * 255.0
    return np.round((1 - alpha) * pixels + alpha * colours).astype(np.uint8)


def edited_copies(files: Sequence[ImageSource],
                  edits: Sequence[dict] = NEAR_DUPLICATE_EDITS) -> tuple[list, np.ndarray]:
    """The photos, then a copy of each for every edit, and the photo each of them shows.

    The test of a near-duplicate threshold: a photo and its copies are same-photo
    pairs, every other pair shows different photos.

    Args:
        files: N photos, anything ``load_image`` accepts.
        edits: keyword arguments of ``edit``, one dict per copy; by default the edits
            the registry's thresholds were calibrated on.

    Returns:
        The sources (the N photos, then N edited PIL images per edit), and an int
        array as long: the index in ``files`` of the photo each source shows.

    >>> from helpers.images import edited_copies
    >>> sources, photo_ids = edited_copies(list_images("images")[:2])
    >>> len(sources), photo_ids
    (6, array([0, 1, 0, 1, 0, 1]))
    """
    files = list(files)
    sources = files + [edit(f, **e) for e in edits for f in files]
    return sources, np.tile(np.arange(len(files)), 1 + len(edits))


def heavy_copies(files: Sequence[ImageSource], kinds: Sequence[str] = HEAVY_EDIT_KINDS, seed: int = 0,
                 light: Sequence[dict] = NEAR_DUPLICATE_EDITS) -> tuple[list, np.ndarray, list[str]]:
    """The photos, a light copy of each per ``light`` edit, and a heavy copy of each per kind.

    The test set of near-duplicate finding against heavy edits: every copy is drawn
    afresh (``heavy_edit``) from one seeded generator, so the set is varied and the
    same on every run.

    Args:
        files: N photos, anything ``load_image`` accepts.
        kinds: one heavy copy of each photo per name from ``HEAVY_EDIT_KINDS``.
        seed: seed of the generator that draws the edits.
        light: keyword arguments of ``edit``, one light copy per dict.

    Returns:
        The sources (the N photos, then N copies per light edit and per kind), an int
        array as long (the index in ``files`` of the photo each source shows), and the
        kind of each source: "original", "light" or a heavy kind.

    >>> from helpers.images import heavy_copies
    >>> sources, photo_ids, kinds = heavy_copies(list_images("images")[:2], kinds=["crop", "combo"], light=[])
    >>> photo_ids, kinds
    (array([0, 1, 0, 1, 0, 1]), ['original', 'original', 'crop', 'crop', 'combo', 'combo'])
    """
    files = list(files)
    rng = np.random.default_rng(seed)
    sources, _ = edited_copies(files, light)
    names = ["original"] * len(files) + ["light"] * len(files) * len(light)
    for kind in kinds:
        sources += [edit(f, **heavy_edit(kind, rng)) for f in files]
        names += [kind] * len(files)
    return sources, np.tile(np.arange(len(files)), len(sources) // max(len(files), 1)), names
