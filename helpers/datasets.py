"""Labelled image folders: a small offline one to learn with, and loading yours.

The layout is the one ``keras.utils.image_dataset_from_directory`` reads too:
one subfolder per class, named for the class::

    root/train/brick/brick_y000_x000.png
    root/train/grass/...
    root/test/brick/...
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .images import IMAGE_SUFFIXES, list_images, load_image

# Texture photos that scikit-image ships (512x512, gray), of things ImageNet has no class for.
TEXTURES = ("brick", "grass", "gravel")


def build_texture_dataset(root, patch: int = 64, train_per_class: int = 16, test_per_class: int = 16,
                          gap: int = 64) -> tuple[Path, Path]:
    """Cut scikit-image's brick, grass and gravel photos into a train and a test folder.

    Each photo is cut into non-overlapping ``patch`` x ``patch`` squares. Train
    patches come from the top rows of the photo and test patches from the
    bottom rows, at least ``gap`` pixels apart, so no test patch shares a pixel
    with a train patch. File names say where a patch was cut:
    ``brick_y384_x064.png`` has its top-left corner at row 384, column 64.

    Args:
        root: an empty or missing folder; ``train`` and ``test`` are made in it.
        patch: side of a patch in pixels.
        train_per_class: patches per class in ``train``.
        test_per_class: patches per class in ``test``.
        gap: the least number of pixel rows between the train and the test region.

    Returns:
        ``(train_folder, test_folder)``, each with one subfolder per class of
        RGB PNG files (uint8, ``patch`` x ``patch``).

    >>> train, test = build_texture_dataset("data/textures")
    """
    from skimage import data

    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root}: not empty; pass a new or empty folder as root (or delete this one)")
    photos = {name: getattr(data, name)() for name in TEXTURES}
    height, width = next(iter(photos.values())).shape[:2]
    columns = width // patch
    train_rows, test_rows = math.ceil(train_per_class / columns), math.ceil(test_per_class / columns)
    test_top = (height // patch - test_rows) * patch  # the last full rows of the grid
    if train_rows * patch + gap > test_top:
        raise ValueError(f"{train_per_class} train and {test_per_class} test patches of {patch} px do not fit "
                         f"{gap} px apart in a {height}x{width} photo; lower the counts, patch or gap")
    corners = [(row * patch, col * patch) for row in range(height // patch) for col in range(columns)]
    regions = {"train": corners[:train_per_class],
               "test": [(y, x) for y, x in corners if y >= test_top][:test_per_class]}
    for split, split_corners in regions.items():
        for name, photo in photos.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            rgb = np.stack([photo] * 3, axis=-1) if photo.ndim == 2 else photo
            for y, x in split_corners:
                Image.fromarray(rgb[y:y + patch, x:x + patch]).save(folder / f"{name}_y{y:03d}_x{x:03d}.png")
    return root / "train", root / "test"


@dataclass
class LabeledImages:
    """Photos of a folder of class subfolders, as arrays.

    Attributes:
        images: float32 array (N, height, width, 3), RGB 0-255.
        labels: int array (N,), the index of each photo's class in ``class_names``.
        class_names: the subfolder names, sorted.
        sources: the N file paths, in the order of ``images``.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    sources: list[Path]


def load_labeled_images(folder, size: int | tuple[int, int]) -> LabeledImages:
    """Load every photo of ``folder/<class>/`` at ``size``, labelled by its subfolder.

    Photos are loaded as ``load_image(path, size)`` loads them (and so as
    ``extract_features`` does), classes sorted by name, files by name.

    Args:
        folder: a folder with one subfolder of photos per class.
        size: as for ``load_image``: ``net.input_size`` for a model.

    Raises:
        FileNotFoundError: no such folder, no class subfolders, or a class
            subfolder without photos.
        ImageLoadError: a photo cannot be read (the message names it).

    >>> train = load_labeled_images("data/textures/train", size=(224, 224))
    >>> train.images.shape, train.class_names
    ((48, 224, 224, 3), ['brick', 'grass', 'gravel'])
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    class_names = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_names:
        loose = [p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
        hint = f" (it holds {len(loose)} photos directly)" if loose else ""
        raise FileNotFoundError(f"{folder}: no class subfolders{hint}; put each class's photos in a subfolder "
                                f"named for the class: {folder}/cats/*.jpg, {folder}/dogs/*.jpg")
    sources, labels = [], []
    for label, name in enumerate(class_names):
        files = list_images(folder / name)
        sources += files
        labels += [label] * len(files)
    images = np.stack([load_image(path, size=size) for path in sources])
    return LabeledImages(images, np.array(labels), class_names, sources)
