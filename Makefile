VENV := .venv
PY := $(VENV)/bin/python
# The interpreter that creates the venv: `make test PYTHON=python3.12` picks another (3.11 to 3.13).
PYTHON ?= python3
# No TensorFlow settings for test, lab and outputs: the helpers package quiets TensorFlow itself,
# so the make, conda and plain-pip routes of the README meet the same environment (test-portable
# changes TensorFlow's numerics on purpose). Under pytest-xdist the root conftest.py gives each
# worker its share of the cores, on every route alike.

.PHONY: test test-portable lab outputs lock check-models

# Every package at the version in requirements.txt, the lock the notebooks' outputs were made with.
$(VENV)/.installed: pyproject.toml requirements.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -c requirements.txt -e ".[dev,scale]"
	touch $@

# The helpers' tests, their docstring examples and the notebooks (nbval: each cell's stored output
# against a fresh run), in one pytest run spread over up to 4 processes; a notebook's cells stay in order in one of them.
# Each extra process holds its own TensorFlow and models: -n 1 for a machine short of memory.
TEST_ARGS ?= -n auto --maxprocesses=4
test: $(VENV)/.installed
	$(PY) -m pytest $(TEST_ARGS) --dist loadscope --nbval --nbval-current-env notebooks tests helpers

# The notebooks again under the numerics of other computers, each run with an empty cache of
# converted models (so int8 is calibrated again): TensorFlow without oneDNN (as on Apple Silicon)
# on one core (taskset where there is one; elsewhere only TensorFlow's own threads), then oneDNN
# limited to AVX2 (an older or smaller x86 CPU). LiteRT's kernels choose their instructions
# themselves: nothing here makes them run another CPU's. .ci/run runs it after `make test`.
# Minutes: not part of `make test`.
ONE_CORE = $(if $(shell command -v taskset),taskset -c 0) env OMP_NUM_THREADS=1 TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1
# $(call notebooks_with,SETTINGS): nbval over the notebooks with SETTINGS and an empty cache.
notebooks_with = cache="$$(mktemp -d)" && HELPERS_CACHE="$$cache" $(1) \
	$(PY) -m pytest -p no:cacheprovider --nbval --nbval-current-env notebooks; \
	status=$$?; rm -rf "$$cache"; test $$status = 0
test-portable: $(VENV)/.installed
	$(call notebooks_with,TF_ENABLE_ONEDNN_OPTS=0 $(ONE_CORE))
	$(call notebooks_with,ONEDNN_MAX_CPU_ISA=AVX2)

# Jupyter refuses to run as root unless told (containers often run as root).
lab: $(VENV)/.installed
	$(VENV)/bin/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS) notebooks

# Re-execute every notebook in place, with the same environment as the tests, then drop the
# per-cell execution timestamps, which would change every stored notebook on every run.
outputs: $(VENV)/.installed
	cd notebooks && for nb in *.ipynb; do ../$(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace "$$nb" || exit 1; done
	$(PY) -c 'import sys, nbformat; \
		books = [(path, nbformat.read(path, as_version=4)) for path in sys.argv[1:]]; \
		[cell.metadata.pop("execution", None) for _, book in books for cell in book.cells]; \
		[nbformat.write(book, path) for path, book in books]' notebooks/*.ipynb

# Every notebook top to bottom with each other offline model in its settings cell (temporary
# copies; the stored notebooks are untouched), then those models' calibrated near-duplicate
# thresholds and confidence thresholds on the dev set (skipped without it), fine_tune on every registry
# architecture, and the Ray Data extraction test. Minutes per model: not part of `make test`;
# .ci/run runs it last.
check-models: $(VENV)/.installed
	$(PY) tests/run_notebooks_with_model.py efficientnet_lite1 efficientnet_lite2
	HELPERS_CHECK_MODELS=1 $(PY) -m pytest -p no:cacheprovider tests/test_similarity.py tests/test_classify.py \
		tests/test_transfer.py tests/test_scale.py -k "registry_thresholds or other_models or every_model or ray_extraction"

# Refresh requirements.txt: the newest versions that resolve on every platform and Python the
# project supports, one version per package (uv's universal resolution; see its header).
lock:
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet uv
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --extra scale --extra gpu \
		--universal --python-version 3.11 --fork-strategy fewest --upgrade -o requirements.txt
