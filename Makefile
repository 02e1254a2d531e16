# Two commands on a fresh machine: `make demo` (the quick-start ablation sweep) and `make test`.
# VENV may point outside the clone (CI reuses one venv keyed by pyproject.toml's hash).
# Each setup step prints one line with its time; its full output goes to $(VENV)/setup.log and is
# shown only when the step fails.
VENV ?= .venv
PY := $(VENV)/bin/python
DEPS_KEY := $(shell sha256sum pyproject.toml | cut -c1-16)
DEPS_STAMP := $(VENV)/.deps-$(DEPS_KEY)
FMNIST := /usr/share/datasets/fashion-mnist
LOG := $(VENV)/setup.log
EXTRAS := .[all,dev]
# Results root of `make demo` and `make dashboard` (the quick start's storage).
STORAGE ?= $(HOME)/lico-tune-results
# step NAME COMMAND: run COMMAND quietly, print "NAME: ok (Ns)" or the log tail and fail.
step = t0=$$(date +%s); if ( $(2) ) >>$(LOG) 2>&1; then echo "$(1): ok ($$(( $$(date +%s) - t0 )) s)"; \
       else echo "$(1): FAILED, last lines of $(LOG):"; tail -n 25 $(LOG); exit 1; fi

.PHONY: install demo train dashboard test data browser shellcheck bench

$(DEPS_STAMP):
	@mkdir -p $(VENV) && : > $(LOG)
	@echo "venv: installing torch (from this machine's disk) and lico-tune into $(VENV), about 3 minutes..."
	@$(call step,venv,python3 -m venv $(VENV) && $(PY) -m pip install -q --upgrade pip && \
	  $(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1 && $(PY) -m pip install -q -e '$(EXTRAS)')
	@touch $@

# The editable install must point at this checkout (CI reuses one venv for clones in new places).
install: $(DEPS_STAMP)
	@(cd / && $(abspath $(PY)) -c "import lico_tune, sys; sys.exit(lico_tune.__file__ != sys.argv[1])" $(CURDIR)/lico_tune/__init__.py) 2>/dev/null || \
	  { $(call step,lico-tune (editable install of this checkout),$(PY) -m pip install -q --no-deps --no-build-isolation -e .); }

data:
	@test -d $(FMNIST) || { mkdir -p $(VENV); $(call step,data (Debian package dataset-fashion-mnist),apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) || \
	  { echo "Could not install dataset-fashion-mnist; run 'sudo apt-get install dataset-fashion-mnist' or set data.root"; exit 1; }; }

# Chromium drives the dashboard's end-to-end test.
browser:
	@command -v chromium >/dev/null || { mkdir -p $(VENV); $(call step,browser (Debian package chromium),apt-get update -qq && apt-get install -y -qq chromium) || \
	  { echo "Could not install chromium; run 'sudo apt-get install chromium'"; exit 1; }; }

# shellcheck checks the SLURM recipe in the tests.
shellcheck:
	@command -v shellcheck >/dev/null || { mkdir -p $(VENV); $(call step,shellcheck (Debian package shellcheck),apt-get update -qq && apt-get install -y -qq shellcheck) || \
	  { echo "Could not install shellcheck; run 'sudo apt-get install shellcheck'"; exit 1; }; }

# The quick-start ablation as a Ray Tune sweep (a new experiment each time), its report with the
# health of the LICO terms, the saliency maps of the best LICO trial, and what to do next.
demo: install data
	@VENV=$(VENV) STORAGE=$(STORAGE) scripts/demo.sh

# The dashboard of every experiment under STORAGE (Ctrl-C stops it).
dashboard: install
	$(VENV)/bin/lico-tune dashboard $(STORAGE)

# One training run of the quick start's base trial, without Ray.
train: install data
	$(VENV)/bin/lico-tune train search_spaces/quickstart.yaml

# Two pytest-xdist workers, a test module each at a time (its module fixtures are made once); the
# sweeps several modules share are made once per run (tests/results_fixtures.py: made_once).
TEST_WORKERS ?= 2
test: install data browser shellcheck
	$(VENV)/bin/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

bench: install data
	$(PY) benchmarks/step.py
