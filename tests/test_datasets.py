import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import list_images, load_image
from helpers.datasets import load_labeled_images

FASHION_TOPS = Path(__file__).parents[1] / "images" / "fashion_tops"
CLASSES = ["pullover", "shirt", "t-shirt"]


def _indices(folder):
    """(file, index) of each photo, from names such as train_00005.png."""
    return {re.fullmatch(r"(train|t10k)_(\d{5})\.png", p.name).groups() for p in list_images(folder)}


def test_fashion_tops_has_its_splits_and_no_photo_in_two_of_them():
    counts = {"train": 40, "val": 20, "test": 40, "val_large": 100, "test_large": 100}
    for split, count in counts.items():
        assert sorted(p.name for p in (FASHION_TOPS / split).iterdir()) == CLASSES
        for name in CLASSES:
            assert len(list_images(FASHION_TOPS / split / name)) == count
    photos = [_indices(FASHION_TOPS / split / name) for split in counts for name in CLASSES]
    assert len(set().union(*photos)) == sum(len(p) for p in photos) == 900
    # test, val_large, test_large: Fashion-MNIST's test file, which no training photo comes from
    assert all(prefix == "t10k" for prefix, _ in set().union(*photos[6:]))


def test_fashion_not_tops_holds_seven_other_classes_in_two_splits():
    other = FASHION_TOPS.parent / "fashion_not_tops"
    for split, prefix in [("val", "train"), ("test", "t10k")]:
        classes = sorted(p.name for p in (other / split).iterdir())
        assert classes == ["ankle-boot", "bag", "coat", "dress", "sandal", "sneaker", "trouser"]
        photos = [_indices(other / split / name) for name in classes]
        assert [len(p) for p in photos] == [10] * 7 and {f for p in photos for f, _ in p} == {prefix}


def test_fashion_tops_center_crop_takes_exactly_the_28x28_photo():
    path = list_images(FASHION_TOPS / "test" / "shirt")[0]
    stored = np.asarray(Image.open(path))
    assert stored.shape == (32, 32) and not stored[:2].any() and not stored[:, -2:].any()  # the black border
    np.testing.assert_array_equal(load_image(path, size=28)[..., 0], stored[2:-2, 2:-2])


def test_load_labeled_images_labels_by_subfolder_and_explains_a_flat_folder(tmp_path):
    loaded = load_labeled_images(FASHION_TOPS / "val", size=32)
    assert loaded.images.shape == (60, 32, 32, 3) and loaded.images.dtype == np.float32
    assert loaded.class_names == CLASSES
    assert loaded.labels.tolist() == [0] * 20 + [1] * 20 + [2] * 20
    assert [p.parent.name for p in loaded.sources] == [name for name in CLASSES for _ in range(20)]
    with pytest.raises(FileNotFoundError, match=r"no class subfolders \(it holds 20 photos directly\)"):
        load_labeled_images(FASHION_TOPS / "val" / "shirt", size=32)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        load_labeled_images(tmp_path / "missing", size=32)
