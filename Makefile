# The two commands of the quick start: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DEBIAN_DATA := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: setup data browser demo check test clean

setup: $(VENV)/.installed data

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[all]"
	touch $@

# The real Fashion-MNIST from Debian's registry (root here; otherwise sudo, or see README "Data").
data:
	@if [ -f $(DEBIAN_DATA) ] || [ -d data/fashion-mnist ] || [ -n "$$FMNIST_DATA_DIR" ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	else sudo apt-get update -qq && sudo apt-get install -y -qq dataset-fashion-mnist; fi

# Debian's Chromium for the kiosk's browser tests (Playwright drives it; no browser download).
browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
	else sudo apt-get update -qq && sudo apt-get install -y -qq chromium; fi

# Train the default model on a short budget, convert it, benchmark it, print the table.
demo: setup
	$(BIN)/fmnist-edge train --quick
	$(BIN)/fmnist-edge convert
	$(BIN)/fmnist-edge bench --quick

# The fast loop between full runs: the linter and every test that needs no trained model (under 90 s on 2 cores).
check: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -m "not model and not slow and not browser"

# The linter first; the browser tests must run here, never skip: FMNIST_EDGE_REQUIRE_BROWSER=1.
test: setup browser
	$(BIN)/ruff check .
	FMNIST_EDGE_REQUIRE_BROWSER=1 $(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) artifacts .pytest_cache test-artifacts
