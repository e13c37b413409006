import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
# Converted LiteRT models: kept between test runs, out of the user's own cache.
os.environ.setdefault("HELPERS_CACHE", str(ROOT / ".pytest_cache" / "litert"))

IMAGES = ROOT / "images"
DEV = ROOT.parent / "shared" / "data" / "imagenet-sample-dev"  # dev data: tests that use it skip without it


@pytest.fixture(scope="session")
def lite0():
    from helpers import load_model

    return load_model()


@pytest.fixture(scope="session")
def lite0_headless():
    from helpers import load_model

    return load_model(include_top=False)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """``python -m helpers ARGS`` from the project root, as a user runs it."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "helpers", *args], capture_output=True, text=True, cwd=ROOT, env=env)
