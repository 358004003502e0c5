# make book  : install, run every notebook of _toc.yml at PROFILE (default cpu), write them back, build the HTML book
# make html  : build the HTML book from the committed outputs and check that no page loads anything from the network
# make test  : install, unit tests, nbval of every notebook at the smoke profile, a clean -W book build
# make gpu-check : on a CUDA machine, GPU benchmarks at the gpu rows, DDP with NCCL, every chapter at smoke on the GPU
PROFILE ?= cpu
JOBS ?= 1
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SHELL := /bin/bash

.PHONY: book html test install unit nbval clean gpu-check

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install --no-cache-dir -r requirements.txt
	$(PY) -m pip install -e . --no-deps
	touch $(STAMP)

book: install
	$(PY) data_scripts/run_book.py --toc --in-place --profile $(PROFILE) -j $(JOBS)
	$(MAKE) html

html: install
	rm -rf _build
	$(VENV)/bin/jupyter-book build . -W --keep-going
	$(PY) data_scripts/check_offline.py _build/html

unit: install
	$(PY) -m pytest tests -q

nbval: install
	rm -rf _test_runs
	BOOK_PROFILE=smoke BOOK_HEADLESS=1 BOOK_OUT_DIR=$(CURDIR)/_test_runs \
	  $(PY) -m pytest -q --nbval-lax --nbval-current-env -p no:cacheprovider \
	  $$($(PY) data_scripts/run_book.py --toc --list)

test: unit nbval html

gpu-check: install
	$(PY) data_scripts/gpu_check.py --out $(or $(OUT),runs)/gpu_check

clean:
	rm -rf _build _test_runs
