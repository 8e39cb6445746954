# Shortcuts for the scripts; see README.md. The lab targets (test, test-py39, demo) need root.
#   make test       the whole suite (unit + integration + every lab scenario, then again on 3.9): scripts/test.sh
#   make test-py39  only the CPython 3.9 run with Amazon Linux 2023's library versions
#   make demo       the lab demo: a healthy and a broken private VPC
#   make wheel      dist/vpce_doctor-<version>-py3-none-any.whl
#   make sdist      dist/vpce_doctor-<version>.tar.gz
#   make rpm        dist/vpce-doctor-<version>-1.amzn2023.noarch.rpm (+ SRPM), linted: scripts/build-rpm.sh

DIST ?= dist
# A Python with `build`: the project's .venv when it has it, else a small one in build/ (git-ignored).
VENV_BUILD := build/venv/bin/python
BUILD_PYTHON ?= $(shell .venv/bin/python -c 'import build' 2>/dev/null && echo .venv/bin/python || echo $(VENV_BUILD))

.PHONY: test test-py39 demo wheel sdist rpm clean

test:
	scripts/test.sh

test-py39:
	scripts/test-py39.sh

demo:
	scripts/demo.sh

$(VENV_BUILD):
	python3 -m venv build/venv
	$(VENV_BUILD) -m pip install -q 'build>=1.0'

wheel: $(filter $(VENV_BUILD),$(BUILD_PYTHON))
	$(BUILD_PYTHON) -m build --wheel --outdir $(DIST) .

sdist: $(filter $(VENV_BUILD),$(BUILD_PYTHON))
	$(BUILD_PYTHON) -m build --sdist --outdir $(DIST) .

rpm:
	scripts/build-rpm.sh $(DIST)

clean:
	rm -rf $(DIST) build
