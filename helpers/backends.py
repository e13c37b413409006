"""Run a model on batches: plain Keras, or LiteRT (XNNPACK) for about twice the speed on a CPU.

The notebooks teach the Keras path (``net.model.predict``); the batch helpers
(``classify``, ``extract_features``) and the command line use LiteRT when the
``ai-edge-litert`` package is installed. The Keras model is converted once and
cached on disk, keyed by model name, input size and a hash of the weights.

``precision="int8"`` converts to full-integer LiteRT instead (int8 weights and
activations, float input and output): about twice as fast again on a CPU, at a
small cost in accuracy. Its activation ranges are calibrated on crops of the
photos in ``images/`` (never on evaluation data), and the calibration set is part
of the cache key.
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
import weakref
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

BACKENDS = ("keras", "litert")
PRECISIONS = ("float32", "int8")
CALIBRATION_PHOTOS = Path(__file__).resolve().parents[1] / "images"
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


# One fd-2 swap for the whole package (helpers/quiet.py): C++ notices no Python setting reaches.
from .quiet import quiet_stderr as _quiet_stderr  # noqa: E402


def _usable_cores() -> int:
    """Cores this process may run on (a container may allow fewer than the machine has)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def weights_hash(model) -> str:
    """A short hash of a Keras model's weights: what can change under a converted model
    in a session (its architecture cannot), so ``predictor`` checks it on every call."""
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(weight.path.encode())
        digest.update(np.ascontiguousarray(weight.numpy()).tobytes())
    return digest.hexdigest()[:16]


def model_hash(model, weights: str | None = None) -> str:
    """A short hash of a Keras model's architecture and weights (``weights``: its
    ``weights_hash``, when known): the cache key of its conversion on disk."""
    architecture = hashlib.sha256(model.to_json().encode()).hexdigest()
    return hashlib.sha256(f"{architecture}{weights or weights_hash(model)}".encode()).hexdigest()[:16]


def calibration_images(size: tuple[int, int], folder: Path | None = None) -> np.ndarray:
    """The photos int8 conversion calibrates on: uint8 (n, h, w, 3), 0-255, always the same.

    For each distinct photo in ``folder`` (None: the project's ``images/``): squares of the
    whole shorter side (at both ends and the middle of the longer one) and of 60% of it (on
    a 3x3 grid), resized to ``size``, each also mirrored. For ``images/``, 272 inputs: whole
    scenes and close-ups, so that the activation ranges cover both.

    Raises:
        FileNotFoundError: no such folder (``images/`` comes with a clone of the project).

    >>> calibration_images((224, 224)).shape
    (272, 224, 224, 3)
    """
    from PIL import Image

    from .images import list_images, load_image

    if folder is None and not CALIBRATION_PHOTOS.is_dir():
        raise FileNotFoundError(f"precision='int8' calibrates on the photos in {CALIBRATION_PHOTOS}, which is "
                                "missing: install the project from a clone (pip install -e .)")
    h, w = size
    crops, seen = [], set()
    for path in list_images(folder or CALIBRATION_PHOTOS):
        digest = hashlib.sha256(path.read_bytes()).digest()
        if digest in seen:  # the same photo under another name
            continue
        seen.add(digest)
        photo = Image.fromarray(load_image(path, dtype="uint8"))
        for fraction in (1.0, 0.6):
            side = round(min(photo.size) * fraction)
            xs = sorted({round(t * (photo.width - side)) for t in (0, 0.5, 1)})
            ys = sorted({round(t * (photo.height - side)) for t in (0, 0.5, 1)})
            for y in ys:
                for x in xs:
                    crop = np.asarray(photo.resize((w, h), Image.BILINEAR, box=(x, y, x + side, y + side)))
                    crops += [crop, crop[:, ::-1]]
    return np.stack(crops)


def _convert(model, calibration: Callable[[], Iterator[list[np.ndarray]]] | None = None) -> bytes:
    """The Keras model as a LiteRT flatbuffer for any batch size: float32, or full
    integer when ``calibration`` yields representative inputs ([batch of one])."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if calibration is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = calibration
        # Every op in int8 or the conversion fails (rather than leaving slow float islands);
        # input and output stay float32, so callers pass the same batches as for float.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    # Keras prints the exported signature to stdout, TensorFlow's Python logger "Assets written
    # to ..." (shown in notebooks), the converter its C++ notices to file descriptor 2.
    logger, level = tf.get_logger(), tf.get_logger().level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), _quiet_stderr(), warnings.catch_warnings():
            # Said for every int8 conversion with float input: nothing for a user to act on.
            warnings.filterwarnings("ignore", "Statistics for quantized inputs were expected")
            return converter.convert()
    finally:
        logger.setLevel(level)


class LiteRTModel:
    """A Keras model converted to LiteRT, called like ``model.predict_on_batch``.

    Safe to call from several threads (calls take turns on one interpreter).

    Args:
        model: a functional ``keras.Model`` with one image input.
        threads: inference threads; None uses every core this process may run on.
        cache: folder for converted models; None is ``cache_dir()``.
        precision: "float32" (the Keras model's outputs to 1e-3) or "int8" (full
            integer, calibrated on ``calibration_images``).
        preprocess: for "int8", the model's preprocessing (0-255 batch -> model input),
            applied to the calibration photos.

    >>> fast = LiteRTModel(load_model().model)
    >>> fast(np.zeros((1, 224, 224, 3), np.float32)).shape
    (1, 1000)
    """

    def __init__(self, model, threads: int | None = None, cache: Path | None = None, precision: str = "float32",
                 preprocess: Callable[[np.ndarray], np.ndarray] | None = None):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if precision == "int8" and preprocess is None:
            raise ValueError("precision='int8' needs the model's preprocess function to calibrate")
        self.threads = threads or _usable_cores()
        self.precision = precision
        self.weights_hash = weights_hash(model)
        self.model_hash = model_hash(model, self.weights_hash)
        self._lock = threading.Lock()
        h, w = model.input_shape[1:3]
        folder = Path(cache) if cache is not None else cache_dir()
        calibration = None
        if precision == "float32":
            self.path = folder / f"{model.name}-{h}x{w}-{self.model_hash}.tflite"
            probe = np.random.default_rng(0).uniform(-1, 1, (1, *model.input_shape[1:])).astype(np.float32)
        else:
            photos = calibration_images((h, w))
            probe = preprocess(photos[::16].astype(np.float32))
            # The key covers the photos and what preprocess makes of them.
            key = hashlib.sha256(photos.tobytes() + probe.tobytes()).hexdigest()[:12]
            self.path = folder / f"{model.name}-{h}x{w}-{self.model_hash}-int8-{key}.tflite"

            def calibration():
                for photo in photos:
                    yield [preprocess(photo[None].astype(np.float32))]
        expected = np.asarray(model(probe, training=False))
        if self.path.is_file() and self._load_and_check(str(self.path), probe, expected):
            return
        if self.path.exists():
            log.warning("rebuilding %s: the cached file does not match the model", self.path)
        flatbuffer = _convert(model, calibration)
        try:
            self._write(flatbuffer, folder)
            source = str(self.path)
            del flatbuffer  # the interpreter maps the file: no second copy in memory
        except OSError as e:
            log.warning("cannot cache the converted model in %s (%s): keeping it in memory", folder, e)
            source = flatbuffer
        if not self._load_and_check(source, probe, expected):
            advice = "use backend='keras'" if precision == "float32" else "use precision='float32'"
            raise RuntimeError(f"the LiteRT {precision} conversion of {model.name!r} does not reproduce "
                               f"the Keras model; {advice}")

    def _write(self, flatbuffer: bytes, folder: Path) -> None:
        # Write to a temporary file and rename: a crash never leaves half a model under the real name.
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, suffix=".part", delete=False) as part:
            part.write(flatbuffer)
        os.replace(part.name, self.path)

    def _load_and_check(self, source: str | bytes, probe: np.ndarray, expected: np.ndarray) -> bool:
        """Load a model file (path) or flatbuffer (bytes); True when it gives the Keras
        model's outputs on the probe inputs (float32), or nearly (int8: see ``int8_matches``)."""
        from ai_edge_litert.interpreter import Interpreter

        where = {"model_content": source} if isinstance(source, bytes) else {"model_path": source}
        try:
            with _quiet_stderr():  # the delegate announces itself on the first call
                self.interpreter = Interpreter(**where, num_threads=self.threads)
                self._batch = None
                got = self(probe)
        except (ValueError, RuntimeError):  # not a flatbuffer, or not this model's
            return False
        if got.shape != expected.shape:
            return False
        if self.precision == "float32":
            return bool(np.allclose(got, expected, atol=1e-3, rtol=1e-3))
        integer = any(t["dtype"] == np.int8 for t in self.interpreter.get_tensor_details())
        return integer and int8_matches(got, expected)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Outputs for a preprocessed float32 batch (n, h, w, 3)."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        with self._lock:
            inp = self.interpreter.get_input_details()[0]
            if self._batch != batch.shape:
                self.interpreter.resize_tensor_input(inp["index"], list(batch.shape))
                self.interpreter.allocate_tensors()
                self._batch = batch.shape
            self.interpreter.set_tensor(inp["index"], batch)
            self.interpreter.invoke()
            return self.interpreter.get_tensor(self.interpreter.get_output_details()[0]["index"]).copy()


def int8_matches(got: np.ndarray, expected: np.ndarray, explained: float = 0.8) -> bool:
    """Whether int8 outputs reproduce float outputs over a set of probe inputs.

    Rounding every activation to 256 levels moves each output a little, so elementwise
    closeness is the wrong test. This one asks that the int8 outputs explain at least
    ``explained`` of how the float outputs vary from one probe input to the next
    (R squared). Other weights' outputs explain none of it (below 0 in the tests); correct
    conversions of EfficientNet-Lite0 explain 0.98 (classifier) and 0.94 (headless
    feature maps) on the probe photos.

    Args:
        got, expected: float arrays of the same shape (n, ...), n >= 2 probe inputs.

    >>> int8_matches(np.array([[0.95, 0.05], [0.1, 0.9]]), np.array([[1.0, 0.0], [0.0, 1.0]]))
    True
    """
    spread = float(((expected - expected.mean(axis=0)) ** 2).sum())
    return spread > 0 and float(((got - expected) ** 2).sum()) <= (1 - explained) * spread


_warned = False


def resolve_backend(backend: str | None) -> str:
    """``"keras"`` or ``"litert"``; None picks LiteRT when installed, else Keras with one log line."""
    global _warned
    if backend is None:
        if litert_available():
            return "litert"
        if not _warned:
            log.warning("ai-edge-litert is not installed: running on Keras, about half as fast "
                        "(pip install ai-edge-litert)")
            _warned = True
        return "keras"
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)} or None, got {backend!r}")
    if backend == "litert" and not litert_available():
        raise RuntimeError("backend='litert' needs the ai-edge-litert package: pip install ai-edge-litert")
    return backend


def resolve_precision(precision: str, backend: str | None) -> None:
    """Check a ``precision`` argument against the backend it needs; raises ValueError or RuntimeError."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "int8" and backend == "keras":
        raise ValueError("precision='int8' runs on LiteRT only: use backend='litert' or None, "
                         "or precision='float32' for Keras")
    if precision == "int8" and not litert_available():
        raise RuntimeError("precision='int8' needs the ai-edge-litert package: pip install ai-edge-litert")


# keras.Model -> {precision: LiteRTModel}
_converted: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_converting = threading.Lock()


def predictor(net, backend: str | None = None, precision: str = "float32") -> Callable[[np.ndarray], np.ndarray]:
    """A function from a preprocessed batch to the model's outputs, on the chosen backend.

    The LiteRT model is made once per Keras model, weights and precision in a session
    (and cached on disk across sessions); changing the model's weights makes a new one.
    With ``backend=None``, a model LiteRT cannot convert to float32 runs on Keras, with
    a log line. ``precision="int8"`` runs on LiteRT only (the first time for a model,
    calibrating and converting takes one to two minutes on 2 cores).

    >>> net = load_model()
    >>> run = predictor(net, "litert", precision="int8")
    >>> run(net.preprocess(np.zeros((1, 224, 224, 3)))).shape
    (1, 1000)
    """
    resolve_precision(precision, backend)
    chosen = resolve_backend(backend if precision == "float32" else "litert")
    if chosen == "litert":
        with _converting:
            made = _converted.setdefault(net.model, {})
            fast = made.get(precision)
            try:
                # The weights only: hashing the architecture (to_json) costs as much again, per call.
                if fast is None or fast.weights_hash != weights_hash(net.model):
                    fast = made[precision] = LiteRTModel(net.model, precision=precision, preprocess=net.preprocess)
                return fast
            except (RuntimeError, ValueError, OSError) as e:
                if backend is not None or precision != "float32":
                    raise
                log.warning("LiteRT cannot run %s (%s): running on Keras", net.name, e)
    # predict_on_batch: one compiled call, without predict()'s per-call dataset set-up.
    return lambda batch: np.asarray(net.model.predict_on_batch(batch))
