"""pytest settings for running the notebooks as tests: ``pytest --nbval notebooks``.

Points nbval at ``nbval_sanitize.cfg`` (beside this file) unless ``--nbval-sanitize-with`` names
another file, so every route that runs the notebooks as tests compares their outputs the same way.
"""
from pathlib import Path


def pytest_configure(config):
    if getattr(config.option, "nbval_sanitize_with", "absent") is None:
        config.option.nbval_sanitize_with = str(Path(__file__).with_name("nbval_sanitize.cfg"))
