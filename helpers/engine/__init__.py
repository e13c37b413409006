"""The fast engine, behind its own door: LiteRT (TensorFlow Lite's new name) in float32 or int8,
its disk cache of converted models, int8 calibration, and a pipeline of worker threads that
decode photos and run the model at once.

The lessons' calls (``classify``, ``extract_features``) run the Keras model the reader loaded;
they come here only when asked: ``backend="litert"`` or ``"fastest"``, or ``precision="int8"``.
The command line and Ray batch jobs ask by default (``backend="fastest"``).
"""

from .litert import (PRECISIONS, SUB_BATCH, LiteRTModel, cache_dir, calibration_crops, convert, int8_matches,
                     litert_available, model_digest, usable_cores, weights_digest)
from .pipeline import BACKENDS, check_precision, predictor, resolve_backend, stream_batches

__all__ = [
    "PRECISIONS", "SUB_BATCH", "LiteRTModel", "cache_dir", "calibration_crops", "convert", "int8_matches",
    "litert_available", "model_digest", "usable_cores", "weights_digest",
    "BACKENDS", "check_precision", "predictor", "resolve_backend", "stream_batches",
]
