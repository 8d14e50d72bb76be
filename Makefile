# The two commands a new user runs: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup fixtures browser demo test bench quality clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: setup
	$(VENV)/bin/multibox demo

# Real VOC/COCO photos for the reader tests (Debian's labelme-examples); the tests skip them when absent.
fixtures:
	@if [ -d /usr/share/doc/labelme-examples/examples ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  (timeout 300 apt-get update -qq && timeout 300 apt-get install -y -qq labelme-examples) >/dev/null 2>&1 \
	    || echo "labelme-examples could not be installed: its tests will be skipped"; \
	else echo "labelme-examples not installed (needs apt as root): its tests will be skipped"; fi

# Headless Chromium for the serving page's browser test (Debian's chromium + chromium-driver); the test
# skips itself when they are absent.
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  (timeout 300 apt-get update -qq && timeout 600 apt-get install -y -qq chromium chromium-driver) >/dev/null 2>&1 \
	    || echo "chromium could not be installed: the browser test will be skipped"; \
	else echo "chromium not installed (needs apt as root): the browser test will be skipped"; fi

test: setup fixtures browser
	$(PY) -m pytest

# YOLO11n (speed only) comes from the ultralytics package, installed beside the venv for the benchmark
# alone (--no-deps: its other requirements are the venv's; its opencv would clash with the baselines').
bench: setup
	test -d .bench-deps/ultralytics || $(PY) -m pip install -q --no-deps --target .bench-deps ultralytics \
	  || echo "ultralytics could not be installed: YOLO11n is left out of the table"
	PYTHONPATH=.bench-deps $(PY) bench/run_all.py

# Detection quality of the default against the previous one on the photo trained on and on photos of other
# sites, 3 seeds each (docs/quality.md; about 30 minutes on 2 cores). Other rows: bench/quality.py --configs.
quality: setup
	$(PY) bench/quality.py --configs "before|default" --seeds 0,1,2 --protocols sites,same --out docs/quality_table.md

clean:
	rm -rf runs .pytest_cache
