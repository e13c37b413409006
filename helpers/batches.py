"""Stream images through a model in batches, one worker per core, each decoding and then predicting."""

from __future__ import annotations

import math
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from tqdm import tqdm

from .backends import predictor, resolve_precision, usable_cores
from .images import ImageLoadError, load_image

PROGRESS_FROM = 64  # show a progress bar only for this many images or more


def source_name(source) -> str:
    """How results name a source: its path, or ``<ndarray>`` / ``<PngImageFile>``."""
    return str(source) if isinstance(source, (str, Path)) else f"<{type(source).__name__}>"


def _decode(net, sources) -> tuple[list[str | None], np.ndarray | None]:
    """One error (str or None) per source, and the photos that loaded as one uint8
    batch (n, h, w, 3) at the model's input size (None when none loaded)."""
    errors, photos = [], []
    for source in sources:
        try:
            # uint8: a quarter of the bytes of float32 to copy, and an int8 model's very input.
            photos.append(load_image(source, size=net.input_size, dtype="uint8"))
            errors.append(None)
        except ImageLoadError as e:
            errors.append(str(e))
    return errors, np.stack(photos) if photos else None


# Each worker decodes a batch and then runs the model on it, so that while one worker
# decodes, another runs the model. benchmarks/litert_design.py on 2 cores (Lite0 int8, dev-set
# JPEGs): 312 images/s with two workers on single-threaded interpreters, 233 with one worker
# whose interpreter has both cores but waits while it decodes.
def stream_batches(net, sources: Sequence, batch_size: int = 32, backend: str | None = None,
                   progress: bool | None = None, workers: int | None = None,
                   precision: str = "float32") -> Iterator[tuple[list, np.ndarray | None]]:
    """Yield, per batch, ``(errors, outputs)``: one error (str or None) per source
    of the batch, and the model's outputs for the sources that loaded, in order.

    ``workers`` threads (None: one per usable core) each decode a batch of at most
    ``batch_size`` sources and run the model on it, on ``backend`` ("keras",
    "litert", or None for LiteRT when installed) at ``precision`` ("float32", or
    "int8" on LiteRT). On LiteRT the workers' model calls run at once, sharing the
    cores; on Keras they take turns, each call using every core. Batches are smaller
    than ``batch_size`` when that keeps every worker busy. A progress bar shows when
    ``progress`` is True, or for None from PROGRESS_FROM images on.

    >>> for errors, outputs in stream_batches(net, ["images/coffee.png"]):
    ...     print(errors, outputs.shape)
    [None] (1, 1000)
    """
    resolve_precision(precision, backend)  # a wrong argument fails even for no sources
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    cores = usable_cores()
    workers = cores if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if not len(sources):
        return
    run = predictor(net, backend, precision, threads=max(1, cores // workers))
    size = min(batch_size, math.ceil(len(sources) / workers))
    chunks = iter([list(sources[i:i + size]) for i in range(0, len(sources), size)])

    def job(chunk):
        errors, photos = _decode(net, chunk)
        return errors, run(photos) if photos is not None else None

    show = len(sources) >= PROGRESS_FROM if progress is None else progress
    with tqdm(total=len(sources), disable=not show, unit="img") as bar, ThreadPoolExecutor(workers) as pool:
        # Twice as many batches as workers under way: a worker that finishes early starts
        # the next batch instead of waiting for the one before it to be taken.
        pending = deque(pool.submit(job, chunk) for chunk in islice(chunks, 2 * workers))
        try:
            while pending:
                errors, outputs = pending.popleft().result()
                pending.extend(pool.submit(job, chunk) for chunk in islice(chunks, 1))
                bar.update(len(errors))
                yield errors, outputs
        finally:  # the caller stopped early, or a batch failed: start no more
            for future in pending:
                future.cancel()

