"""Labelled image folders: photos sorted into one subfolder per class.

The layout is the one ``keras.utils.image_dataset_from_directory`` reads too,
with one folder per split::

    images/fashion_tops/train/pullover/train_00005.png
    images/fashion_tops/train/shirt/...
    images/fashion_tops/val/...
    images/fashion_tops/test/...
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .images import IMAGE_SUFFIXES, list_images, load_image


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


def list_labeled_images(folder) -> tuple[list[Path], np.ndarray, list[str]]:
    """The photos of ``folder/<class>/`` with their labels, without loading them.

    Classes are sorted by name, files by name, as ``load_labeled_images`` loads them;
    pass the paths to ``extract_features`` or ``classify``.

    Returns:
        ``(sources, labels, class_names)``: the N paths, int (N,) indices into
        ``class_names``, and the subfolder names, sorted.

    Raises:
        FileNotFoundError: no such folder, no class subfolders, or a class
            subfolder without photos.

    >>> sources, labels, class_names = list_labeled_images("images/fashion_tops/val")
    >>> len(sources), labels[:3].tolist(), class_names
    (60, [0, 0, 0], ['pullover', 'shirt', 't-shirt'])
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
    return sources, np.array(labels), class_names


def load_labeled_images(folder, size: int | tuple[int, int]) -> LabeledImages:
    """Load every photo of ``folder/<class>/`` at ``size``, labelled by its subfolder.

    Photos are loaded as ``load_image(path, size)`` loads them (and so as
    ``extract_features`` does), classes sorted by name, files by name
    (``list_labeled_images``).

    Args:
        folder: a folder with one subfolder of photos per class.
        size: as for ``load_image``: ``net.input_size`` for a model.

    Raises:
        FileNotFoundError: no such folder, no class subfolders, or a class
            subfolder without photos.
        ImageLoadError: a photo cannot be read (the message names it).

    >>> train = load_labeled_images("images/fashion_tops/train", size=(224, 224))
    >>> train.images.shape, train.class_names
    ((120, 224, 224, 3), ['pullover', 'shirt', 't-shirt'])
    """
    sources, labels, class_names = list_labeled_images(folder)
    images = np.stack([load_image(path, size=size) for path in sources])
    return LabeledImages(images, labels, class_names, sources)
