"""Many photos through a model fast: a backend chosen by name, worker threads that decode and predict.

``stream_batches`` is what ``classify`` and ``extract_features`` call when the caller asks for
LiteRT (``backend="litert"`` or ``"fastest"``, or ``precision="int8"``), and what the command
line and batch jobs use by default.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
import weakref
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from typing import Callable, Iterator, Sequence

import numpy as np

from ..images import Calibration, ImageSource, list_images, load_images
from ..models import Net, progress_bar
from .litert import PRECISIONS, LiteRTModel, calibration_crops, litert_available, usable_cores, weights_digest

BACKENDS = ("keras", "litert", "fastest")
log = logging.getLogger("helpers")
_warned = False


def resolve_backend(backend: str) -> str:
    """``"keras"`` or ``"litert"``: "fastest" is LiteRT when installed, else Keras with one log line."""
    global _warned
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "fastest":
        if litert_available():
            return "litert"
        if not _warned:
            log.warning("ai-edge-litert is not installed: running on Keras, about half as fast "
                        "(pip install ai-edge-litert)")
            _warned = True
        return "keras"
    if backend == "litert" and not litert_available():
        raise RuntimeError("backend='litert' needs the ai-edge-litert package: pip install ai-edge-litert")
    return backend


def check_precision(precision: str, backend: str | None, calibration: Calibration | None) -> None:
    """Check a ``precision`` argument against the backend and calibration photos it needs."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "int8" and backend == "keras":
        raise ValueError("precision='int8' runs on LiteRT only: use backend='litert' (or leave backend out), "
                         "or precision='float32' for Keras")
    if precision == "int8" and calibration is None:
        raise ValueError("precision='int8' calibrates on photos like yours: pass calibration=FOLDER "
                         "(a few dozen photos, never the ones you evaluate on), e.g. calibration='images'")
    if precision == "int8" and not litert_available():
        raise RuntimeError("precision='int8' needs the ai-edge-litert package: pip install ai-edge-litert")


# keras.Model -> {(precision, preprocessing, calibration_key): (weights digest, its LiteRTModel, or why
# LiteRT cannot run it: (exception type, message), not the exception, whose traceback would keep the model alive)}
_converted: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_converting = threading.Lock()


def predictor(net: Net, backend: str = "fastest", precision: str = "float32", threads: int | None = None,
              calibration: Calibration | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """A function from a batch of photos (n, h, w, 3), 0-255, uint8 or float, to the
    model's outputs, on the chosen backend; it preprocesses them itself.

    The function may be called from several threads: on LiteRT the calls run at once,
    each with ``threads`` inference threads (None: every core); on Keras they take turns.
    The LiteRT model is made once per Keras model, weights, preprocessing, precision and
    calibration photos in a session (and cached on disk across sessions); changing the model's
    weights makes a new one. With ``backend="fastest"``, a model LiteRT cannot convert
    to float32 runs on Keras, with a log line. ``precision="int8"`` runs on LiteRT only,
    calibrated on ``calibration`` (a folder or photos; the first time for a model,
    calibrating and converting takes one to two minutes on 2 cores).

    >>> run = predictor(load_model(), "litert")
    >>> run(np.zeros((1, 224, 224, 3), np.uint8)).shape
    (1, 1000)
    """
    check_precision(precision, backend, calibration)
    chosen = resolve_backend(backend if precision == "float32" else "litert")
    if chosen == "litert":
        if precision == "int8" and not isinstance(calibration, (str, os.PathLike)):
            calibration = list(calibration)  # read twice below: for the key, then for the crops
        key = (precision, net.preprocess, None if precision == "float32" else calibration_key(calibration))
        with _converting:
            made = _converted.setdefault(net.model, {})
            # The weights only: hashing the architecture (to_json) costs as much again, per call.
            digest = weights_digest(net.model)
            if made.get(key, (None,))[0] != digest:
                # Bad calibration photos raise here, unremembered: the caller may fix them and call again.
                crops = None if precision == "float32" else calibration_crops(calibration, net.input_size)
                try:
                    fast = LiteRTModel(net.model, precision=precision, preprocess=net.preprocess, calibration=crops)
                except (RuntimeError, ValueError, OSError) as e:
                    fast = type(e), str(e)
                made[key] = digest, fast
            fast = made[key][1]
        if not isinstance(fast, tuple):
            return lambda batch: fast.on_photos(batch, threads)
        error, message = fast
        if backend != "fastest" or precision != "float32":
            raise error(message)
        log.warning("LiteRT cannot run %s (%s): running on Keras", net.name, message)
    turns = threading.Lock()

    def keras_predict(photos: np.ndarray) -> np.ndarray:
        batch = net.preprocess(np.asarray(photos, dtype=np.float32))
        with turns:  # Keras and TensorFlow already use every core for one call
            # predict_on_batch: predict's compiled call, without its per-call dataset set-up.
            return np.asarray(net.model.predict_on_batch(batch))

    return keras_predict


def calibration_key(calibration: Calibration) -> tuple:
    """What tells calibration photos apart within a session, cheaply: each file by its path, size
    and modification time (a folder's files included), each picture in memory by its pixels."""
    def stamp(source) -> tuple:
        if not isinstance(source, (str, os.PathLike)):
            array = np.asarray(source)
            return array.shape, str(array.dtype), hashlib.sha256(array.tobytes()).hexdigest()
        try:
            status = os.stat(source)
        except OSError:  # calibration_crops says what is wrong with it, by name
            return (str(source),)
        return str(source), status.st_size, status.st_mtime_ns

    files = list_images(calibration) if isinstance(calibration, (str, os.PathLike)) else calibration
    return tuple(stamp(source) for source in files)


# Each worker decodes a batch and then runs the model on it, so that while one worker
# decodes, another runs the model. benchmarks/litert_design.py on 2 cores (Lite0 int8, dev-set
# JPEGs): 312 images/s with two workers on single-threaded interpreters, 233 with one worker
# whose interpreter has both cores but waits while it decodes.
def stream_batches(net: Net, sources: Sequence[ImageSource], batch_size: int = 32, backend: str = "fastest",
                   precision: str = "float32", calibration: Calibration | None = None,
                   workers: int | None = None) -> Iterator[tuple[list[str | None], np.ndarray | None]]:
    """Yield, per batch, ``(errors, outputs)``: one error (str or None) per source
    of the batch, and the model's outputs for the sources that loaded, in order.

    ``workers`` threads (None: one per usable core) each decode a batch of at most
    ``batch_size`` sources and run the model on it, on ``backend`` at ``precision``
    (see ``predictor``). On LiteRT the workers' model calls run at once, sharing the
    cores; on Keras they take turns, each call using every core. Batches are smaller
    than ``batch_size`` when that keeps every worker busy. A progress bar shows on a
    terminal from ``PROGRESS_FROM`` images on.

    >>> batches = stream_batches(load_model(), ["images/coffee.png", "images/missing.png"], workers=1)
    >>> [(errors, outputs.shape) for errors, outputs in batches]
    [([None, 'images/missing.png: no such file'], (1, 1000))]
    """
    check_precision(precision, backend, calibration)  # a wrong argument fails even for no sources
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    cores = usable_cores()
    workers = cores if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if not len(sources):
        return
    run = predictor(net, backend, precision, threads=max(1, cores // workers), calibration=calibration)
    crop_fraction = net.spec.preprocessing.crop_fraction
    size = min(batch_size, math.ceil(len(sources) / workers))
    chunks = iter([list(sources[i:i + size]) for i in range(0, len(sources), size)])

    def job(chunk):
        photos, errors = load_images(chunk, net.input_size, crop_fraction)
        return errors, run(photos) if photos is not None else None

    with progress_bar(len(sources)) as bar, ThreadPoolExecutor(workers) as pool:
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
