import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "images"


@pytest.fixture(scope="session")
def lite0():
    from helpers import load_model

    return load_model()
