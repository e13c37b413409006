"""Classify many photos: one result per photo, in order, a photo that fails to load reported, not fatal.

And a second look (test-time augmentation): ``predict_views`` averages the model's outputs
over views of each photo, its mirror image and corner crops.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .images import Calibration, ImageSource, crop_views, load_images, source_name
from .labels import decode_predictions
from .models import Net, predict_batches


@dataclass
class Classification:
    """The result for one source: its top-k ``(wnid, label, score)`` or its error."""

    source: str
    predictions: list[tuple[str, str, float]] = field(default_factory=list)
    error: str | None = None


def classify(net: Net, sources: Sequence[ImageSource], top: int = 5, batch_size: int = 32,
             backend: str | None = None, precision: str = "float32",
             calibration: Calibration | None = None) -> list[Classification]:
    """Classify images (paths, PIL images or arrays) in input order.

    Each photo is centre-cropped to the model's input size, then the Keras model you
    loaded runs on batches of them: ``net.model.predict_on_batch(net.preprocess(photos))``.
    A source that cannot be loaded gets ``error`` set; the others are still classified.

    Args:
        net: from ``load_model``.
        sources: image paths, PIL images or (h, w, 3) arrays, 0-255.
        top: how many classes per photo, best first.
        batch_size: photos per model call.
        backend: None runs the Keras model; "litert" or "fastest" (LiteRT when installed)
            run the fast engine, about twice as fast on a CPU (``helpers.engine``).
        precision: "float32", or "int8" on LiteRT: faster again, for a point of top-1 at
            most (benchmarks/README.md); converted once, in a minute or two.
        calibration: for "int8", a folder (or list) of photos like yours to calibrate on.

    >>> results = classify(load_model(), ["images/coffee.png", "images/missing.png"])
    >>> results[0].predictions[0][1], results[1].error
    ('espresso', 'images/missing.png: no such file')
    """
    sources = list(sources)
    results = []
    for errors, outputs in predict_batches(net, sources, batch_size, backend, precision, calibration):
        decoded = iter(decode_predictions(outputs, top=top) if outputs is not None else [])
        for error in errors:
            name = source_name(sources[len(results)])
            results.append(Classification(name, [] if error else next(decoded), error))
    return results


def predict_views(net: Net, sources: Sequence[ImageSource], views: Sequence[str] = ("center", "mirror"),
                  batch_size: int = 16) -> tuple[np.ndarray, list[str | None]]:
    """The model's output for each photo, averaged over views of it (test-time augmentation).

    Each photo's centre square is resized to the model's input size divided by its crop
    fraction (256 for 224), and ``crop_views`` cuts the views from it: "center" is the crop
    ``classify`` takes, up to the rounding of that size. All views of a batch of photos go
    through ``net.model.predict_on_batch`` together; the mean over each photo's views is its output.

    Args:
        net: from ``load_model``.
        sources: image paths, PIL images or (h, w, 3) arrays, 0-255.
        views: names from ``VIEWS``.
        batch_size: photos per model call (each brings ``len(views)`` images).

    Returns:
        ``(outputs, errors)``: float32 (N, ...) in input order (probabilities, for a model
        with its top), a NaN row for a source that could not be loaded; and per source
        None or why it could not be loaded.

    >>> outputs, errors = predict_views(load_model(), ["images/coffee.png", "no.png"])
    >>> imagenet_classes()[int(outputs[0].argmax())][1], errors[1]
    ('espresso', 'no.png: no such file')
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    sources = list(sources)
    h, w = net.input_size
    fraction = net.spec.preprocessing.crop_fraction
    larger = (round(h / fraction), round(w / fraction))
    outputs = np.full((len(sources), *net.model.output.shape[1:]), np.nan, dtype=np.float32)
    errors: list[str | None] = []
    for start in range(0, len(sources), batch_size):
        photos, batch_errors = load_images(sources[start:start + batch_size], larger, crop_fraction=1.0)
        if photos is not None:
            batch = np.concatenate([crop_views(photo, (h, w), views) for photo in photos])
            output = np.asarray(net.model.predict_on_batch(net.preprocess(batch)))
            loaded = [start + i for i, error in enumerate(batch_errors) if error is None]
            outputs[loaded] = output.reshape(len(photos), len(views), *output.shape[1:]).mean(axis=1)
        errors += batch_errors
    return outputs, errors
