VENV := .venv
PY := $(VENV)/bin/python
# Quiet TensorFlow: its oneDNN notice is an absl line TF_CPP_MIN_LOG_LEVEL does not silence,
# and a stored log line would fail nbval. The same setting for tests, outputs and lab keeps numerics identical.
export TF_CPP_MIN_LOG_LEVEL := 3
export TF_ENABLE_ONEDNN_OPTS := 0

.PHONY: test lab outputs

$(VENV)/.installed: pyproject.toml
	test -d $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	touch $@

test: $(VENV)/.installed
	$(PY) -m pytest tests
	if ls notebooks/*.ipynb >/dev/null 2>&1; then $(PY) -m pytest --nbval --nbval-current-env notebooks; fi

# Jupyter refuses to run as root unless told (containers often run as root).
lab: $(VENV)/.installed
	$(VENV)/bin/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS) notebooks

# Re-execute every notebook in place, with the same environment as the tests.
outputs: $(VENV)/.installed
	cd notebooks && for nb in *.ipynb; do ../$(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace "$$nb"; done
