VENV := .venv
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL := 3

.PHONY: test lab

$(VENV)/.installed: pyproject.toml
	test -d $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	touch $@

test: $(VENV)/.installed
	$(PY) -m pytest tests
	if ls notebooks/*.ipynb >/dev/null 2>&1; then $(PY) -m pytest --nbval --nbval-current-env notebooks; fi

lab: $(VENV)/.installed
	$(VENV)/bin/jupyter lab notebooks
