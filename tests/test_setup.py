import os
import platform
import re
import subprocess
import sys
import tomllib

import pytest
from support import ROOT
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _locked() -> dict[str, set[str]]:
    """Package name -> the versions requirements.txt pins it to (one per Python/platform marker)."""
    pins: dict[str, set[str]] = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            requirement = Requirement(line)
            (spec,) = requirement.specifier  # exactly one specifier per line
            assert spec.operator == "==", line
            pins.setdefault(canonicalize_name(requirement.name), set()).add(spec.version)
    return pins


def test_every_dependency_and_extra_is_pinned_in_the_lock():
    named = PROJECT["dependencies"] + [d for extra in PROJECT["optional-dependencies"].values() for d in extra]
    locked = _locked()
    missing = [d for d in named if canonicalize_name(Requirement(d).name) not in locked]
    assert not missing, f"not in requirements.txt: {missing}; run `make lock`"
    # And the lock satisfies what pyproject.toml asks for (a stale lock after a bumped bound fails).
    for d in map(Requirement, named):
        assert all(d.specifier.contains(v) for v in locked[canonicalize_name(d.name)]), d


def test_every_install_route_uses_the_lock():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"pip install -c requirements\.txt -e \"\.\[dev,scale\]\"", makefile)
    # conda: the same pip command from the project's folder, so both routes get the same versions.
    env = (ROOT / "environment.yml").read_text()
    assert re.search(r"^\s*- -c requirements\.txt\s*$", env, re.M)
    assert re.search(r"^\s*- -e \.\[dev,scale\]\s*$", env, re.M)
    # The settings the notebooks need live in the package, not only in the Makefile: the targets a
    # reader runs set no TensorFlow variable (test-portable does, on purpose, to change the numerics).
    portable = re.search(r"^test-portable:.*\n((?:\t.*\n)+)", makefile, re.M).group(0)
    assert "TF_ENABLE_ONEDNN_OPTS=0" in portable
    settings = [line for line in makefile.replace(portable, "").splitlines()
                if ("TF_" in line or "ONEDNN" in line) and not line.startswith("#")]
    assert settings == ["ONE_CORE = $(if $(shell command -v taskset),taskset -c 0) env OMP_NUM_THREADS=1 "
                        "TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1"]  # used by test-portable only
    assert makefile.count("$(ONE_CORE)") == 1 and "$(ONE_CORE)" in portable
    # The README's routes run the tests as make does.
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    make_args = re.search(r"^TEST_ARGS \?= (.*)$", makefile, re.M).group(1)
    assert re.search(r"^\t\$\(PY\) -m pytest \$\(TEST_ARGS\) (.*)$", makefile, re.M).group(1) == \
        "--dist loadscope --nbval --nbval-current-env notebooks tests helpers"
    assert readme.count(f"pytest {make_args} --dist loadscope --nbval --nbval-current-env notebooks tests helpers") == 2


def _clean_env(**extra: str) -> dict[str, str]:
    """A terminal with nothing set for TensorFlow: PATH and HOME (and where the cache of converted
    models is, so the run finds the conversions the other tests made)."""
    env = {k: os.environ[k] for k in ("PATH", "HOME", "SYSTEMROOT", "HELPERS_CACHE", "XDG_CACHE_HOME")
           if k in os.environ}
    return env | extra


def test_cli_prints_nothing_on_stderr_in_a_clean_environment():
    run = subprocess.run([sys.executable, "-m", "helpers", "classify", "images/coffee.png", "--top", "1"],
                         capture_output=True, text=True, cwd=ROOT, env=_clean_env())
    assert run.returncode == 0, run.stderr
    assert "espresso" in run.stdout
    assert run.stderr == ""


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the oneDNN notice is printed on x86_64 only")
def test_tensorflow_log_lines_come_back_with_log_level_0():
    # The silence above is the package's doing (TensorFlow does print, and oneDNN stays on).
    run = subprocess.run([sys.executable, "-c", "import helpers"], capture_output=True, text=True, cwd=ROOT,
                         env=_clean_env(TF_CPP_MIN_LOG_LEVEL="0"))
    assert run.returncode == 0, run.stderr
    assert "oneDNN custom operations are on" in run.stderr


def test_quiet_blocks_nest_and_restore_stderr(capfd):
    import os

    from helpers.quiet import quiet_stderr

    with quiet_stderr():
        with quiet_stderr():  # a nested block must not wait for the outer one (it would hang)
            os.write(2, b"inner\n")
        os.write(2, b"outer\n")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"
