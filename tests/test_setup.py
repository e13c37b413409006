import re
import tomllib

from conftest import ROOT


def test_environment_yml_installs_the_pyproject_packages():
    env = (ROOT / "environment.yml").read_text()
    # environment.yml installs the project itself with its dev extra, so the
    # package list lives only in pyproject.toml and the two cannot disagree.
    assert re.search(r"^\s*- -e \.\[dev\]\s*$", env, re.M)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "dev" in project["optional-dependencies"]
