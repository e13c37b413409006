"""Feature vectors from a headless model, and saving them so a gallery is encoded once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .images import Calibration, ImageSource, source_name
from .models import Net, predict_batches

POOLINGS = ("avg", "max", None)


@dataclass
class Features:
    """Feature vectors of many images, one row per source, in input order.

    Attributes:
        vectors: float32 array (N, D) for pooling "avg" or "max", or the raw
            feature maps (N, h, w, C) for pooling None. The row of a source
            that could not be loaded is NaN.
        sources: the N sources, as strings.
        errors: per source, None or why it could not be loaded.
        model_name: the registry name of the model that made the vectors.
        pooling: "avg", "max" or None.
        precision: "float32" or "int8", how the model ran; near-duplicate
            thresholds are calibrated on float32 vectors.
    """

    vectors: np.ndarray
    sources: list[str]
    errors: list[str | None]
    model_name: str
    pooling: str | None
    precision: str = "float32"

    @property
    def ok(self) -> np.ndarray:
        """Boolean mask (N,) of the sources that loaded."""
        return np.array([e is None for e in self.errors], dtype=bool)

    def valid(self) -> Features:
        """The same set without the sources that failed to load.

        >>> features = extract_features(load_model(include_top=False), ["images/coffee.png", "no.png"])
        >>> features.valid().sources
        ['images/coffee.png']
        """
        keep = self.ok
        return Features(self.vectors[keep], [s for s, k in zip(self.sources, keep) if k],
                        [None] * int(keep.sum()), self.model_name, self.pooling, self.precision)

    def save(self, path) -> None:
        """Write the set to an ``.npz`` file (vectors, sources, errors, model name, pooling, precision).

        >>> import tempfile, os
        >>> folder = tempfile.TemporaryDirectory()
        >>> path = os.path.join(folder.name, "gallery.npz")
        >>> extract_features(load_model(include_top=False), ["images/coffee.png"]).save(path)
        >>> load_features(path, model_name="efficientnet_lite0").vectors.shape
        (1, 1280)
        """
        np.savez(path, vectors=self.vectors, sources=np.array(self.sources, dtype=str),
                 errors=np.array(["" if e is None else e for e in self.errors], dtype=str),
                 model=self.model_name, pooling="none" if self.pooling is None else self.pooling,
                 precision=self.precision)


def load_features(path, model_name: str | None = None) -> Features:
    """Read a set written by ``Features.save``.

    Args:
        path: the ``.npz`` file.
        model_name: the registry name of the model the set must come from; a set
            made by another model is an error, since their vectors cannot be compared.
    """
    with np.load(path, allow_pickle=False) as data:
        pooling = str(data["pooling"])
        features = Features(data["vectors"], [str(s) for s in data["sources"]],
                            [str(e) or None for e in data["errors"]], str(data["model"]),
                            None if pooling == "none" else pooling,
                            str(data["precision"]) if "precision" in data else "float32")  # older files: float32
    if model_name is not None and model_name != features.model_name:
        raise ValueError(f"{path}: these features were made by {features.model_name!r}, not {model_name!r}; "
                         f"extract them again with load_model({model_name!r}, include_top=False)")
    return features


def extract_features(net: Net, sources: Sequence[ImageSource], pooling: str | None = "avg", batch_size: int = 32,
                     backend: str | None = None, precision: str = "float32",
                     calibration: Calibration | None = None) -> Features:
    """Feature vectors of images (paths, PIL images or arrays) from a headless model.

    The Keras model you loaded runs on a batch of photos at a time and only the pooled
    vectors are kept, so memory stays flat in the number of images (except for pooling
    None, which keeps every feature map). A source that cannot be loaded gets a NaN row
    and its error.

    Args:
        net: from ``load_model(name, include_top=False)``.
        sources: image paths, PIL images or (h, w, 3) arrays.
        pooling: "avg" or "max" over the feature map's height and width, giving
            (N, channels); None keeps the maps (N, h, w, channels).
        batch_size: images per model call.
        backend: None runs the Keras model; "litert" or "fastest" (LiteRT when installed)
            run the fast engine, about twice as fast on a CPU (``helpers.engine``).
        precision: "float32", or "int8" on LiteRT: faster again; its vectors have a cosine
            of about 0.994 with float32 ones (benchmarks/README.md).
        calibration: for "int8", a folder (or list) of photos like yours to calibrate on.

    Returns:
        A ``Features`` set; ``.vectors`` is float32 (N, D) or (N, h, w, C).

    >>> net = load_model(include_top=False)
    >>> extract_features(net, ["images/coffee.png", "images/chelsea.png"]).vectors.shape
    (2, 1280)
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be 'avg', 'max' or None, got {pooling!r}")
    shape = tuple(net.model.output.shape[1:])
    if len(shape) != 3:
        raise ValueError(f"{net.name} outputs shape {shape}, not feature maps: "
                         f"load it with load_model({net.name!r}, include_top=False)")
    sources = list(sources)
    row = shape if pooling is None else shape[-1:]
    vectors = np.full((len(sources), *row), np.nan, dtype=np.float32)
    errors: list[str | None] = []
    for batch_errors, maps in predict_batches(net, sources, batch_size, backend, precision, calibration):
        rows = [len(errors) + i for i, e in enumerate(batch_errors) if e is None]
        if rows:
            vectors[rows] = maps if pooling is None else (maps.mean(axis=(1, 2)) if pooling == "avg"
                                                          else maps.max(axis=(1, 2)))
        errors += batch_errors
    return Features(vectors, [source_name(s) for s in sources], errors, net.name, pooling, precision)
