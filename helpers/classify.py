"""Classify many photos: batches, overlapped decoding, one result per source."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from .batches import source_name, stream_batches
from .labels import decode_predictions


@dataclass
class Classification:
    """The result for one source: its top-k ``(wnid, label, score)`` or its error."""

    source: str
    predictions: list[tuple[str, str, float]] = field(default_factory=list)
    error: str | None = None


def classify(net, sources: Sequence, top: int = 5, batch_size: int = 32, backend: str | None = None,
             progress: bool | None = None, precision: str = "float32") -> list[Classification]:
    """Classify images (paths, PIL images or arrays) in input order.

    A source that cannot be loaded gets ``error`` set; the others are still classified.
    ``backend``: "keras", "litert" (about twice as fast on a CPU), or None for
    LiteRT when ``ai-edge-litert`` is installed. ``progress``: a progress bar on
    stderr; None shows one from 64 images on (pass False in notebooks meant as tests).
    ``precision``: "float32", or "int8" on LiteRT: about 1.5 times as fast from files,
    for a point of top-1 at most (README, "Throughput"; converted once, in a minute or two).

    >>> results = classify(load_model(), ["images/coffee.png", "images/chelsea.png"])
    >>> results[0].predictions[0][1]
    'espresso'
    """
    sources = list(sources)
    results = []
    for errors, outputs in stream_batches(net, sources, batch_size, backend, progress, precision=precision):
        decoded = iter(decode_predictions(outputs, top=top) if outputs is not None else [])
        for error in errors:
            name = source_name(sources[len(results)])
            results.append(Classification(name, [] if error else next(decoded), error))
    return results
