"""Run a model on batches: plain Keras, or LiteRT (XNNPACK) for about twice the speed on a CPU.

The notebooks teach the Keras path (``net.model.predict``); the batch helpers
(``classify``, ``extract_features``) and the command line use LiteRT when the
``ai-edge-litert`` package is installed. The Keras model is converted once and
cached on disk, keyed by model name, input size and a hash of the weights.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import sys
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Callable

import numpy as np

BACKENDS = ("keras", "litert")
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


_stderr_lock = threading.Lock()


@contextlib.contextmanager
def _quiet_stderr():
    """Silence C++ log lines written straight to file descriptor 2 (the converter's notices,
    LiteRT's "Created TensorFlow Lite XNNPACK delegate"), which no Python setting reaches
    and which would end up in notebook outputs. Python exceptions still propagate."""
    with _stderr_lock:  # one swap at a time, or a second one would "restore" /dev/null
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            with open(os.devnull, "w") as devnull:
                os.dup2(devnull.fileno(), 2)
                yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _usable_cores() -> int:
    """Cores this process may run on (a container may allow fewer than the machine has)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def model_hash(model) -> str:
    """A short hash of a Keras model's architecture and weights: the cache key of its conversion."""
    digest = hashlib.sha256(model.to_json().encode())
    for weight in model.weights:
        digest.update(weight.path.encode())
        digest.update(np.ascontiguousarray(weight.numpy()).tobytes())
    return digest.hexdigest()[:16]


def _convert(model) -> bytes:
    """The Keras model as a LiteRT flatbuffer, float32, for any batch size."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    # Keras prints the exported signature to stdout, TensorFlow's Python logger "Assets written
    # to ..." (shown in notebooks), the converter its C++ notices to file descriptor 2.
    logger, level = tf.get_logger(), tf.get_logger().level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), _quiet_stderr():
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

    >>> fast = LiteRTModel(load_model().model)
    >>> fast(np.zeros((1, 224, 224, 3), np.float32)).shape
    (1, 1000)
    """

    def __init__(self, model, threads: int | None = None, cache: Path | None = None):
        self.threads = threads or _usable_cores()
        self.model_hash = model_hash(model)
        self._lock = threading.Lock()
        h, w = model.input_shape[1:3]
        folder = Path(cache) if cache is not None else cache_dir()
        self.path = folder / f"{model.name}-{h}x{w}-{self.model_hash}.tflite"
        probe = np.random.default_rng(0).uniform(-1, 1, (1, *model.input_shape[1:])).astype(np.float32)
        expected = np.asarray(model(probe, training=False))
        if self.path.is_file() and self._load_and_check(str(self.path), probe, expected):
            return
        if self.path.exists():
            log.warning("rebuilding %s: the cached file does not match the model", self.path)
        flatbuffer = _convert(model)
        try:
            self._write(flatbuffer, folder)
            source = str(self.path)
            del flatbuffer  # the interpreter maps the file: no second copy in memory
        except OSError as e:
            log.warning("cannot cache the converted model in %s (%s): keeping it in memory", folder, e)
            source = flatbuffer
        if not self._load_and_check(source, probe, expected):
            raise RuntimeError(f"the LiteRT conversion of {model.name!r} does not reproduce the Keras model; "
                               "use backend='keras'")

    def _write(self, flatbuffer: bytes, folder: Path) -> None:
        # Write to a temporary file and rename: a crash never leaves half a model under the real name.
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, suffix=".part", delete=False) as part:
            part.write(flatbuffer)
        os.replace(part.name, self.path)

    def _load_and_check(self, source: str | bytes, probe: np.ndarray, expected: np.ndarray) -> bool:
        """Load a model file (path) or flatbuffer (bytes); True when it gives the Keras
        model's output on a probe input."""
        from ai_edge_litert.interpreter import Interpreter

        where = {"model_content": source} if isinstance(source, bytes) else {"model_path": source}
        try:
            with _quiet_stderr():  # the delegate announces itself on the first call
                self.interpreter = Interpreter(**where, num_threads=self.threads)
                self._batch = None
                got = self(probe)
        except (ValueError, RuntimeError):  # not a flatbuffer, or not this model's
            return False
        return got.shape == expected.shape and bool(np.allclose(got, expected, atol=1e-3, rtol=1e-3))

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


_converted: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # keras.Model -> LiteRTModel
_converting = threading.Lock()


def predictor(net, backend: str | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """A function from a preprocessed batch to the model's outputs, on the chosen backend.

    The LiteRT model is made once per Keras model and weights in a session (and
    cached on disk across sessions); changing the model's weights makes a new one.
    With ``backend=None``, a model LiteRT cannot convert runs on Keras, with a log line.

    >>> net = load_model()
    >>> run = predictor(net, "litert")
    >>> run(net.preprocess(np.zeros((1, 224, 224, 3)))).shape
    (1, 1000)
    """
    chosen = resolve_backend(backend)
    if chosen == "litert":
        with _converting:
            fast = _converted.get(net.model)
            try:
                if fast is None or fast.model_hash != model_hash(net.model):
                    fast = _converted[net.model] = LiteRTModel(net.model)
                return fast
            except (RuntimeError, ValueError, OSError) as e:
                if backend is not None:
                    raise
                log.warning("LiteRT cannot run %s (%s): running on Keras", net.name, e)
    # predict_on_batch: one compiled call, without predict()'s per-call dataset set-up.
    return lambda batch: np.asarray(net.model.predict_on_batch(batch))
