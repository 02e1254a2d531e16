# Two commands on a fresh machine: `make demo` (quick start) and `make test`.
# VENV may point outside the clone (CI reuses one venv keyed by pyproject.toml's hash).
VENV ?= .venv
PY := $(VENV)/bin/python
DEPS_KEY := $(shell sha256sum pyproject.toml | cut -c1-16)
DEPS_STAMP := $(VENV)/.deps-$(DEPS_KEY)
FMNIST := /usr/share/datasets/fashion-mnist

.PHONY: install demo test data browser bench

$(DEPS_STAMP):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch/torchvision: the builds on this machine's disk (plain pip finds them; uv/poetry would download).
	$(PY) -m pip install torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -e '.[all,dev]'
	touch $@

install: $(DEPS_STAMP)
	@$(PY) -m pip install -q --no-deps --no-build-isolation -e . >/dev/null

data:
	@test -d $(FMNIST) || { echo "Fashion-MNIST missing: installing the Debian package dataset-fashion-mnist"; \
	  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) || \
	  { echo "Could not install dataset-fashion-mnist; run 'sudo apt-get install dataset-fashion-mnist' or set data.root"; exit 1; }; }

# Chromium drives the dashboard's end-to-end test.
browser:
	@command -v chromium >/dev/null || { echo "chromium missing: installing the Debian package"; \
	  (apt-get update -qq && apt-get install -y -qq chromium) || \
	  { echo "Could not install chromium; run 'sudo apt-get install chromium'"; exit 1; }; }

demo: install data
	$(VENV)/bin/lico-tune train search_spaces/quickstart.yaml

test: install data browser
	$(VENV)/bin/python -m pytest -q tests

bench: install data
	$(PY) benchmarks/step.py
