"""Keep TensorFlow's start-up log lines out of terminals and notebooks.

Importing TensorFlow prints lines such as ``WARNING: All log messages before
absl::InitializeLog() is called are written to STDERR`` and the oneDNN notice
straight to file descriptor 2, where no Python setting reaches them and
``TF_CPP_MIN_LOG_LEVEL`` does not stop them. ``import helpers`` imports
TensorFlow once with that descriptor pointed at the null device, then
restores it, so oneDNN stays on (it is what makes Keras fast on Intel and AMD
CPUs) and errors raised later still show. Set ``TF_CPP_MIN_LOG_LEVEL=0`` before
importing ``helpers`` to see every line again.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator

_lock = threading.RLock()
_depth = 0  # nested quiet_stderr blocks of the thread holding the lock: only the outermost swaps


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence what C++ code writes to file descriptor 2 inside the block.

    Python exceptions still propagate; the descriptor is restored on the way out.
    Blocks may nest (``classify`` inside a quiet block converts quietly too); other
    threads wait, since a second swap would "restore" the null device.

    >>> with quiet_stderr():
    ...     import tensorflow
    """
    global _depth
    with _lock:
        if _depth:
            _depth += 1
            try:
                yield
            finally:
                _depth -= 1
            return
        sys.stderr.flush()
        saved = os.dup(2)
        _depth = 1
        try:
            with open(os.devnull, "w") as devnull:
                os.dup2(devnull.fileno(), 2)
                yield
        finally:
            _depth = 0
            os.dup2(saved, 2)
            os.close(saved)


def import_tensorflow_quietly() -> None:
    """Import TensorFlow without its start-up lines, unless TF_CPP_MIN_LOG_LEVEL=0 asks for them.

    >>> import_tensorflow_quietly()
    """
    # The default also quiets what TensorFlow logs later, for instance a model conversion's notices.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules or os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0":
        return
    with quiet_stderr():
        import tensorflow

        # Look for GPUs now rather than at the first prediction: on a machine without one,
        # TensorFlow logs "failed call to cuInit" as an error, which TF_CPP_MIN_LOG_LEVEL=2 still shows.
        tensorflow.config.list_physical_devices("GPU")
