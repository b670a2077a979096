# Two commands on a fresh machine (as root): `make demo` and `make test`. Both set up first;
# set-up is a no-op when already done.
SHELL := /bin/bash
PYTHON ?= python3.11
UV := .tools/bin/uv
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
CHROMIUM := /usr/bin/chromium
APT_INSTALL := apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends
export TF_USE_LEGACY_KERAS := 1
# Python may cache bytecode in the venv: with PYTHONDONTWRITEBYTECODE set (as on our CI machines) every
# process the tests start (a CLI run, a conversion server, a KFP task) compiles TensorFlow again, ~8 s each.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: setup demo test test-fast test-zoo image
setup: $(FMNIST) $(CHROMIUM) .venv/.synced

# Real data: Debian's Fashion-MNIST package (IDX files under /usr/share/datasets/fashion-mnist).
$(FMNIST):
	$(APT_INSTALL) dataset-fashion-mnist

# Headless Chromium: the tests render the HTML report and take a screenshot.
$(CHROMIUM):
	$(APT_INSTALL) chromium

# uv, bootstrapped with the machine's Python 3.11 (kept out of the project venv).
$(UV):
	$(PYTHON) -m venv .tools && .tools/bin/pip install -q uv==0.13.9

# The pinned stack from uv.lock (ml-metadata 1.17.1 override: see pyproject.toml).
.venv/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --locked
	touch $@

demo: setup
	.venv/bin/collabopt demo

# The full suite: what CI and the README run (about 25 min on 2 cores), on three workers: the CPU stays busy
# while a worker waits on a child process or a server (a module on one worker; tests/conftest.py
# builds the shared pipeline runs once for all).
PYTEST_WORKERS := -n 3 --dist loadfile --no-loadscope-reorder  # files in conftest's order: heaviest first
test: setup
	.venv/bin/pytest $(PYTEST_WORKERS) -m "not zoo"

# Before every commit: everything but the real pipelines (under 5 minutes).
test-fast: setup
	.venv/bin/pytest $(PYTEST_WORKERS) -m "not slow"

# The layer-coverage zoo (tests/test_zoo.py, issue 20): ten models through every leaf, minutes each;
# not in `make test` (its 25-minute budget).
test-zoo: setup
	.venv/bin/pytest -m zoo tests/test_zoo.py

image:
	docker build --build-arg VERSION=$$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml) \
	  -t collabopt:$$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml) .
