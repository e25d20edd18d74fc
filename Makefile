# Three commands do everything (see README): `make book`, `make live` and `make test`.
# Each sets itself up first; set-up is skipped when nothing changed since the last run.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BOOK_FLAGS := -W -n --keep-going

.PHONY: all setup setup-browser setup-live book live test test-package lint gpu-check clean

all: test

# --- set-up -------------------------------------------------------------------------
$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { \
	  echo "setup: could not create a virtual environment; install python3-venv (sudo apt-get install python3-venv)" >&2; exit 1; }
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	@touch $@

setup: $(STAMP)
	@bash scripts/setup_system.sh

setup-browser: $(STAMP)
	@bash scripts/setup_system.sh --browser

# Thebe (npm) for `make live`, vendored once into .vendor/ (scripts/live.py keeps the stamp).
setup-live: $(STAMP)
	@ls .vendor/thebe-*/.complete >/dev/null 2>&1 || bash scripts/setup_system.sh --live
	@$(BIN)/python scripts/live.py --fetch-only

# --- the book -----------------------------------------------------------------------
# Progress bars print one final line in the static pages (densenet_edu/progress.py).
# Two editions: English into _build/html/, Chinese (zh/) into _build/html/zh/. The Chinese
# chapters' code is the English chapters' code, so their outputs come from the shared
# execution cache (scripts/book_cache.sh empties it when densenet_edu or benchmarks/*.json change).
book: setup
	@bash scripts/book_cache.sh
	DENSENET_EDU_STATIC_PROGRESS=1 DENSENET_EDU_EDITIONS=zh $(BIN)/jupyter-book build $(BOOK_FLAGS) .
	DENSENET_EDU_STATIC_PROGRESS=1 DENSENET_EDU_EDITIONS=zh $(BIN)/jupyter-book build $(BOOK_FLAGS) zh --path-output _build/zh
	rm -rf _build/html/zh && cp -r _build/zh/_build/html _build/html/zh

# The built book with a "Run live" button on chapter pages: cells run on a local kernel
# (127.0.0.1, fresh token). Builds the book first when a chapter is newer than its page.
live: setup setup-live
	@$(BIN)/python scripts/live.py

# --- tests --------------------------------------------------------------------------
lint: $(STAMP)
	$(BIN)/ruff check densenet_edu tests _ext scripts
	$(BIN)/ruff format --check densenet_edu tests _ext scripts
	$(BIN)/actionlint .github/workflows/*.yml

test-package: setup
	$(BIN)/python -m pytest -q -m "not book"

test: setup-browser setup-live lint book
	$(BIN)/python -m pytest -q

# A machine with a GPU: the suite on CUDA plus autocast / channels_last checks (< 5 min).
gpu-check: setup
	bash scripts/gpu_check.sh

clean:
	rm -rf _build
