"""The namespace of the docstring examples in helpers/ (pytest --doctest-modules, run by make test).

Each example runs from the project root (so ``"images/coffee.png"`` is found) with ``np`` and every
public name of ``helpers`` already imported, as a reader who typed ``from helpers import *`` has them.
"""
import functools
import os

import pytest


def pytest_configure(config):
    """Under pytest-xdist (make test), each worker process gets its share of the cores for
    TensorFlow, and so do the notebook kernels it starts: two workers each using every core
    would spend part of their time taking turns. It works because no conftest or plugin imports
    TensorFlow before this hook runs (helpers is imported by the tests themselves); a setting of
    the caller's own wins."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(max(1, cores // workers)))
        os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")


def pytest_ignore_collect(collection_path, config):
    """conftest files hold no examples; collected as modules, the two in tests/ and notebooks/ clash."""
    return True if collection_path.name == "conftest.py" else None


@pytest.fixture(autouse=True)
def doctest_setup(request, doctest_namespace, monkeypatch):
    if type(request.node).__name__ != "DoctestItem":
        yield
        return
    if request.node.path.name == "scale.py":  # FAISS and pyarrow come with the optional "scale" extra
        for module in ("faiss", "pyarrow"):
            pytest.importorskip(module)
    import numpy as np

    import helpers

    monkeypatch.chdir(request.config.rootpath)
    doctest_namespace["np"] = np
    doctest_namespace.update({name: getattr(helpers, name) for name in helpers.__all__})
    # Each model built once for all the examples (a second build would give the same model).
    doctest_namespace["load_model"] = _load_model_once
    yield


@functools.cache
def _load_model_once(*args, **kwargs):
    from helpers import load_model

    return load_model(*args, **kwargs)
