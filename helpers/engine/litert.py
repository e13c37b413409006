"""LiteRT (TensorFlow Lite's new name): a Keras model converted once, cached on disk, run by XNNPACK.

The Keras model is converted once and cached on disk, keyed by model name, input size and a
hash of the architecture and weights. ``precision="int8"`` converts to full-integer LiteRT
instead (int8 weights and activations, uint8 input, float output): about twice as fast again
on a CPU, at a small cost in accuracy. Its activation ranges are calibrated on photos the
caller passes (``calibration_crops``: never evaluation data), which are part of the cache
key. For EfficientNet-Lite, whose preprocessing (x - 127) / 128 is exactly what the
calibrated input quantization undoes, photos go in as their uint8 pixels, with no float copy.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..images import Calibration, list_images, load_image
from ..quiet import quiet_stderr

PRECISIONS = ("float32", "int8")
# LiteRT runs a batch as sub-batches of this many images, which is faster than whole batches
# (benchmarks/litert_design.py, Lite0, one thread, images/s by sub-batch 1, 2, 4, 8, 32: int8
# 249, 256, 258, 258, 242; float32 142, 135, 134, 129, 122): 4 is within 6% of the best of both.
SUB_BATCH = 4
INT8_FORMAT = b"uint8 input"  # part of the int8 cache key: files made with other settings are not reused
log = logging.getLogger("helpers")


def litert_available() -> bool:
    """Whether the ``ai-edge-litert`` package can be imported."""
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        return False
    return True


def cache_dir() -> Path:
    """Where converted models are kept: $HELPERS_CACHE, else $XDG_CACHE_HOME or ~/.cache, /imagenet-helpers."""
    if os.environ.get("HELPERS_CACHE"):
        return Path(os.environ["HELPERS_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "imagenet-helpers"


def usable_cores() -> int:
    """Cores this process may run on (a container may allow fewer than the machine has)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def weights_digest(model) -> str:
    """A short hash of a Keras model's weight values: what can change under a converted model
    in a session (its architecture cannot), so ``predictor`` checks it on every call."""
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(weight.path.encode())
        digest.update(np.ascontiguousarray(weight.numpy()).tobytes())
    return digest.hexdigest()[:16]


def model_digest(model, digest: str | None = None) -> str:
    """A short hash of a Keras model's architecture and weight values (``digest``: its
    ``weights_digest``, when known): the cache key of its conversion on disk."""
    architecture = hashlib.sha256(model.to_json().encode()).hexdigest()
    return hashlib.sha256(f"{architecture}{digest or weights_digest(model)}".encode()).hexdigest()[:16]


def calibration_crops(photos: Calibration, size: tuple[int, int]) -> np.ndarray:
    """What int8 conversion calibrates on: uint8 (n, h, w, 3), 0-255, the same for the same photos.

    For each distinct photo (a folder's, or those given): squares of the whole shorter
    side (at both ends and the middle of the longer one) and of 60% of it (on a 3x3 grid),
    resized to ``size``, each also mirrored: whole scenes and close-ups, so that the
    activation ranges cover both. Photos like the ones the model will see, never the
    photos it is evaluated on.

    >>> calibration_crops("images", (224, 224)).shape
    (272, 224, 224, 3)
    """
    from PIL import Image

    sources = list_images(photos) if isinstance(photos, (str, os.PathLike)) else list(photos)
    if not sources:
        raise ValueError("no calibration photos: pass a folder or a list of a few dozen photos like yours")
    h, w = size
    crops, seen = [], set()
    for source in sources:
        photo = load_image(source, dtype="uint8")
        digest = hashlib.sha256(photo.tobytes()).digest()
        if digest in seen:  # the same photo under another name
            continue
        seen.add(digest)
        photo = Image.fromarray(photo)
        for fraction in (1.0, 0.6):
            side = round(min(photo.size) * fraction)
            xs = sorted({round(t * (photo.width - side)) for t in (0, 0.5, 1)})
            ys = sorted({round(t * (photo.height - side)) for t in (0, 0.5, 1)})
            for y in ys:
                for x in xs:
                    crop = np.asarray(photo.resize((w, h), Image.BILINEAR, box=(x, y, x + side, y + side)))
                    crops += [crop, crop[:, ::-1]]
    return np.stack(crops)


def convert(model, calibration: Callable[[], Iterator[list[np.ndarray]]] | None = None) -> bytes:
    """The Keras model as a LiteRT flatbuffer for any batch size: float32, or full
    integer when ``calibration`` yields representative inputs ([batch of one])."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if calibration is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = calibration
        # Every op in int8 or the conversion fails (rather than leaving slow float islands).
        # The input is uint8 (a quarter of the bytes to copy in; see LiteRTModel.takes_pixels),
        # the output float32, like the Keras model's.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
    # Keras prints the exported signature to stdout, TensorFlow's Python logger "Assets written
    # to ..." (shown in notebooks), the converter its C++ notices to file descriptor 2.
    logger, level = tf.get_logger(), tf.get_logger().level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), quiet_stderr(), warnings.catch_warnings():
            # Said for every int8 conversion that calibrates on float batches: nothing to act on.
            warnings.filterwarnings("ignore", "Statistics for quantized inputs were expected")
            return converter.convert()
    finally:
        logger.setLevel(level)


_announced = False  # whether an interpreter has allocated its tensors in this process


def _check_threads(threads: int) -> int:
    if threads < 1:
        raise ValueError(f"threads must be at least 1 (or None for every core), got {threads}")
    return threads


class LiteRTModel:
    """A Keras model converted to LiteRT, called like ``model.predict_on_batch``.

    Safe to call from several threads, and calls from several threads run at once,
    each on an interpreter of its own: made when no idle one has the call's number of
    threads, then kept for later calls as long as the model lives.

    Args:
        model: a functional ``keras.Model`` with one image input.
        threads: inference threads of a call; None uses every core this process may run on.
        cache: folder for converted models; None is ``cache_dir()``.
        precision: "float32" (the Keras model's outputs to 1e-3) or "int8" (full
            integer, calibrated on ``calibration``).
        preprocess: the model's preprocessing (0-255 batch -> model input), needed by
            ``on_photos`` and, for "int8", to calibrate.
        calibration: for "int8", uint8 photos (n, h, w, 3) at the model's input size,
            like those it will see: ``calibration_crops(folder, size)``.

    Attributes:
        sub_batch: LiteRT runs a batch this many images at a time (``SUB_BATCH``).

    >>> net = load_model()
    >>> fast = LiteRTModel(net.model, preprocess=net.preprocess)
    >>> fast.on_photos(np.zeros((2, 224, 224, 3), np.uint8)).shape
    (2, 1000)
    """

    def __init__(self, model, threads: int | None = None, cache: Path | None = None, precision: str = "float32",
                 preprocess: Callable[[np.ndarray], np.ndarray] | None = None,
                 calibration: np.ndarray | None = None):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if precision == "int8" and (preprocess is None or calibration is None):
            raise ValueError("precision='int8' needs the model's preprocess function and calibration photos "
                             "(calibration_crops(folder, size)) to calibrate")
        self.threads = usable_cores() if threads is None else _check_threads(threads)
        self.precision = precision
        self.preprocess = preprocess
        self.sub_batch = SUB_BATCH
        self.weights_digest = weights_digest(model)
        self.model_digest = model_digest(model, self.weights_digest)
        self._lock = threading.Lock()
        h, w = model.input_shape[1:3]
        folder = Path(cache) if cache is not None else cache_dir()
        representative = None
        if precision == "float32":
            self.path = folder / f"{model.name}-{h}x{w}-{self.model_digest}.tflite"
            # Inputs on which the converted model must reproduce the Keras model's outputs.
            checks = np.random.default_rng(0).uniform(-1, 1, (1, *model.input_shape[1:])).astype(np.float32)
        else:
            photos = np.asarray(calibration, dtype=np.uint8)
            if photos.ndim != 4 or photos.shape[1:] != (h, w, 3):
                raise ValueError(f"calibration photos of shape {photos.shape}: expected (n, {h}, {w}, 3) uint8, "
                                 "from calibration_crops(folder, size)")
            checks = preprocess(photos[::16].astype(np.float32))
            # The key covers how convert quantizes, the photos and what preprocess makes of them.
            key = hashlib.sha256(INT8_FORMAT + photos.tobytes() + checks.tobytes()).hexdigest()[:12]
            self.path = folder / f"{model.name}-{h}x{w}-{self.model_digest}-int8-{key}.tflite"

            def representative():
                for photo in photos:
                    yield [preprocess(photo[None].astype(np.float32))]
        expected = np.asarray(model(checks, training=False))
        if self.path.is_file() and self._load_and_check(str(self.path), checks, expected):
            return
        if self.path.exists():
            log.warning("rebuilding %s: the cached file does not match the model", self.path)
        flatbuffer = convert(model, representative)
        try:
            self._write(flatbuffer, folder)
            source = str(self.path)
            del flatbuffer  # the interpreters map the file: no copy in memory
        except OSError as e:
            log.warning("cannot cache the converted model in %s (%s): keeping it in memory", folder, e)
            source = flatbuffer
        if not self._load_and_check(source, checks, expected):
            advice = "use backend='keras'" if precision == "float32" else "use precision='float32'"
            raise RuntimeError(f"the LiteRT {precision} conversion of {model.name!r} does not reproduce "
                               f"the Keras model; {advice}")

    def _write(self, flatbuffer: bytes, folder: Path) -> None:
        # Write to a temporary file and rename: a crash never leaves half a model under the real name.
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, suffix=".part", delete=False) as part:
            part.write(flatbuffer)
        os.replace(part.name, self.path)

    def _load_and_check(self, source: str | bytes, checks: np.ndarray, expected: np.ndarray) -> bool:
        """Load a model file (path) or flatbuffer (bytes); True when it gives the Keras
        model's outputs on the check inputs (float32), or nearly (int8: see ``int8_matches``)."""
        self._source = {"model_content": source} if isinstance(source, bytes) else {"model_path": source}
        self._idle: dict[int, list] = {}  # threads -> interpreters no call is using
        self.quantization, self.takes_pixels = None, False
        try:
            interpreter = self._interpreter(self.threads)
            inp = interpreter.get_input_details()[0]
            quantized = inp["dtype"] == np.uint8
            self.quantization = inp["quantization"] if quantized else None
            self._idle[self.threads] = [interpreter]
            got = self(checks)
        except (ValueError, RuntimeError):  # not a flatbuffer, or not this model's
            return False
        if got.shape != expected.shape or quantized != (self.precision == "int8"):
            return False
        self.takes_pixels = quantized and self._quantize_is_preprocess()
        if self.precision == "float32":
            return bool(np.allclose(got, expected, atol=1e-3, rtol=1e-3))
        return int8_matches(got, expected)

    def _interpreter(self, threads: int):
        """An idle interpreter with ``threads`` threads, or a new one."""
        global _announced
        from ai_edge_litert.interpreter import Interpreter

        with self._lock:
            idle = self._idle.setdefault(threads, [])
            if idle:
                return idle.pop()
        # XNNPACK announces itself on file descriptor 2 when the first interpreter of the process
        # allocates its tensors. That one is made by __init__, in the caller's thread; the later
        # ones, also made by worker threads, stay out of quiet_stderr, which a caller may hold.
        with quiet_stderr() if not _announced else contextlib.nullcontext():
            interpreter = Interpreter(**self._source, num_threads=threads)
            interpreter.allocate_tensors()
            _announced = True
        return interpreter

    def _quantize(self, batch: np.ndarray) -> np.ndarray:
        """A model input (float) as the uint8 input of an int8 model: rounded to the nearest level."""
        scale, zero_point = self.quantization
        return np.clip(np.round(batch / scale) + zero_point, 0, 255).astype(np.uint8)

    def _quantize_is_preprocess(self) -> bool:
        """Whether quantizing the preprocessed value of every pixel level gives the level
        back: then photos are the model's uint8 input as they are."""
        if self.preprocess is None:
            return False
        levels = np.broadcast_to(np.arange(256, dtype=np.float32)[None, :, None, None], (1, 256, 1, 3))
        return bool(np.array_equal(self._quantize(self.preprocess(levels.copy())), levels))

    def __call__(self, batch: np.ndarray, threads: int | None = None) -> np.ndarray:
        """Outputs for a batch (n, h, w, 3) of model input (preprocessed, float32);
        ``threads``: inference threads for this call (None: the model's ``threads``)."""
        if self.quantization is None:
            batch = np.ascontiguousarray(batch, dtype=np.float32)
        else:
            batch = self._quantize(np.asarray(batch, dtype=np.float32))
        return self._run(batch, threads)

    def on_photos(self, photos: np.ndarray, threads: int | None = None) -> np.ndarray:
        """Outputs for a batch of photos (n, h, w, 3), 0-255, uint8 or float: preprocessed
        here, or for an int8 model that ``takes_pixels``, uint8 photos go in as they are."""
        if self.takes_pixels and np.asarray(photos).dtype == np.uint8:
            return self._run(np.ascontiguousarray(photos), threads)
        if self.preprocess is None:
            raise ValueError("on_photos needs the model's preprocess function: LiteRTModel(model, preprocess=...)")
        return self(self.preprocess(np.asarray(photos, dtype=np.float32)), threads)

    def _run(self, batch: np.ndarray, threads: int | None) -> np.ndarray:
        threads = self.threads if threads is None else _check_threads(threads)
        interpreter = self._interpreter(threads)
        try:
            inp = interpreter.get_input_details()[0]
            size = [int(d) for d in inp["shape_signature"][1:]]  # -1: any
            if batch.ndim != 4 or not len(batch) or any(d not in (-1, n) for d, n in zip(size, batch.shape[1:])):
                raise ValueError(f"a batch of shape {batch.shape}: expected (n >= 1, {', '.join(map(str, size))})")
            out = interpreter.get_output_details()[0]["index"]
            outputs = []
            for start in range(0, len(batch), self.sub_batch):
                part = batch[start:start + self.sub_batch]
                if tuple(inp["shape"]) != part.shape:
                    interpreter.resize_tensor_input(inp["index"], list(part.shape))
                    interpreter.allocate_tensors()
                    inp = interpreter.get_input_details()[0]
                interpreter.set_tensor(inp["index"], part)
                interpreter.invoke()
                outputs.append(interpreter.get_tensor(out))  # a copy
            return np.concatenate(outputs)
        finally:
            with self._lock:
                self._idle.setdefault(threads, []).append(interpreter)


def int8_matches(got: np.ndarray, expected: np.ndarray, explained: float = 0.8) -> bool:
    """Whether int8 outputs reproduce float outputs over a set of check inputs.

    Rounding every activation to 256 levels moves each output a little, so elementwise
    closeness is the wrong test. This one asks that the int8 outputs explain at least
    ``explained`` of how the float outputs vary from one check input to the next
    (R squared). Other weights' outputs explain none of it (below 0 in the tests); correct
    conversions of EfficientNet-Lite0 explain 0.98 (classifier) and 0.94 (headless
    feature maps) on the check photos.

    Args:
        got, expected: float arrays of the same shape (n, ...), n >= 2 check inputs.

    >>> int8_matches(np.array([[0.95, 0.05], [0.1, 0.9]]), np.array([[1.0, 0.0], [0.0, 1.0]]))
    True
    """
    spread = float(((expected - expected.mean(axis=0)) ** 2).sum())
    return spread > 0 and float(((got - expected) ** 2).sum()) <= (1 - explained) * spread


