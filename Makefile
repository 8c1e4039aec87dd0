# The suite's two commands:  `make reproduce` (every artifact) and `make test` (the test suite).
# Both create the pinned virtual environment in .venv on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROFILE ?= cpu
ARGS ?=

.PHONY: reproduce test venv browser clean-venv

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

## Regenerate every artifact (executed notebooks, figures/, tables) with the given profile.
reproduce: $(STAMP)
	$(PY) -m scarlet_lib.reproduce --profile $(PROFILE) $(ARGS)

## Run the whole test suite (CPU).
test: $(STAMP)
	$(PY) -m pytest -q $(ARGS)

## Debian's Chromium for the real-browser test (optional; the test says why it skips without it).
browser:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core)

clean-venv:
	rm -rf $(VENV)
