"""Classify many photos: one result per photo, in order, a photo that fails to load reported, not fatal."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from .images import Calibration, ImageSource, source_name
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
