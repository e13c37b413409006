"""pytest settings for running the notebooks as tests: ``pytest --nbval notebooks``.

Points nbval at ``nbval_sanitize.cfg`` (beside this file) unless ``--nbval-sanitize-with`` names
another file, so every route that runs the notebooks as tests compares their outputs the same way.
"""
from pathlib import Path

import pytest


@pytest.hookimpl(trylast=True)  # after nbval's own, which reads its deprecated --sanitize-with
def pytest_configure(config):
    if hasattr(config.option, "nbval_sanitize_with") and config.option.nbval_sanitize_with is None:
        config.option.nbval_sanitize_with = str(Path(__file__).with_name("nbval_sanitize.cfg"))
