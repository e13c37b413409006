"""What the tests share besides fixtures (those are in conftest.py): paths, the tiny model's
registry record, and the command line run in this process. Imported as ``from support import ...``."""
import contextlib
import functools
import io
import os
import subprocess
from pathlib import Path
from unittest import mock

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Converted LiteRT models go to the default cache (helpers.engine.cache_dir()), the one the
# notebooks use, so what one of them converts the others load. Tests that check the cache
# itself give LiteRTModel a folder of their own, and so does every tiny model (conftest.tiny_net).

IMAGES = ROOT / "images"
DEV = ROOT.parent / "shared" / "data" / "imagenet-sample-dev"  # dev data: tests that use it skip without it
needs_dev = pytest.mark.skipif(not DEV.is_dir(), reason="dev data ../shared/data/imagenet-sample-dev is absent")
# What `make test` leaves to `make check-models` (run by CI after it, with the notebooks on the other
# offline models): the other models' calibrated values, fine_tune on every architecture, and the Ray
# Data test, whose cluster start-up notebook 08 pays once already in `make test`.
check_models = pytest.mark.skipif(not os.environ.get("HELPERS_CHECK_MODELS"),
                                  reason="another model, or Ray once more: run by make check-models")


def tiny_spec(**changes):
    """The registry record of the tiny model below; ``changes`` replace fields."""
    from dataclasses import replace

    from helpers import ModelSpec, model_spec

    spec = ModelSpec(name="tiny", input_size=(32, 32), preprocessing=model_spec("efficientnet_lite0").preprocessing,
                     last_conv_layer="conv1_relu", activation_layers=("conv0_relu", "conv1", "conv1_relu"),
                     fine_tune_from="conv1", feature_width=8)
    return replace(spec, **changes)


@functools.cache
def architecture(name: str, include_top: bool = False):
    """``load_model(name, include_top, weights=None)``: the architecture only, with random weights,
    built once per test process (several test files build every registry model; none changes it)."""
    from helpers import load_model

    return load_model(name, include_top=include_top, weights=None)


@functools.cache
def _load_model_once(*args, **kwargs):
    """``load_model``, each model once: the commands load the same two or three models again and again."""
    from helpers import load_model

    return load_model(*args, **kwargs)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """``python -m helpers ARGS`` from the project root, as a user runs it, but in this process:
    a new Python would import TensorFlow again for each call. ``returncode`` is ``main``'s exit
    status, or 2 from argparse for a bad option. test_setup runs the real entry point once."""
    from helpers import cli

    out, err = io.StringIO(), io.StringIO()
    with (mock.patch.object(cli, "load_model", _load_model_once), contextlib.chdir(ROOT),
          contextlib.redirect_stdout(out), contextlib.redirect_stderr(err)):
        try:
            code = cli.main(list(args))
        except SystemExit as e:  # argparse: a bad option or value
            code = e.code
    return subprocess.CompletedProcess(["python", "-m", "helpers", *args], code, out.getvalue(), err.getvalue())
