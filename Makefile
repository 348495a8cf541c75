# The two commands of the quick start: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DEBIAN_DATA := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: setup data browser nginx demo check test clean grpc-protos

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

# Debian's nginx for the https:// model store tests (tests/test_stores.py starts its own, on a free port).
nginx:
	@if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq nginx; \
	else sudo apt-get update -qq && sudo apt-get install -y -qq nginx; fi

# Train the default model on a short budget, convert it, benchmark it, print the table.
demo: setup
	$(BIN)/fmnist-edge train --quick
	$(BIN)/fmnist-edge convert
	$(BIN)/fmnist-edge bench --quick

# The fast loop between full runs: the linter and every test that needs no trained model (under 90 s on 2 cores).
check: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -m "not model and not slow and not browser and not ray"

# The linter first; the browser tests must run here, never skip: FMNIST_EDGE_REQUIRE_BROWSER=1.
test: setup browser nginx
	$(BIN)/ruff check .
	FMNIST_EDGE_REQUIRE_BROWSER=1 $(BIN)/python -m pytest -q

# Regenerate the gRPC service's Python code (fmnist_edge/serve/grpc/*_pb2*.py, committed) from Triton's .proto files
# in fmnist_edge/serve/grpc/protos/. grpcio-tools 1.76.0 bundles protoc 31.1: gencode 6.31.1, which runs on protobuf
# 6.31.1 (TensorFlow's floor) up to 7.x, and code that needs grpcio >= 1.76. It pins protobuf < 7, so it gets a venv
# of its own under build/, never .venv.
GRPC_TOOLS := grpcio-tools==1.76.0
GRPC_PKG   := fmnist_edge/serve/grpc
grpc-protos:
	$(PYTHON) -m venv build/protoc-venv
	build/protoc-venv/bin/python -m pip install --quiet $(GRPC_TOOLS)
	build/protoc-venv/bin/python -m grpc_tools.protoc -I$(GRPC_PKG)/protos --python_out=$(GRPC_PKG) \
		--grpc_python_out=$(GRPC_PKG) $(GRPC_PKG)/protos/grpc_service.proto $(GRPC_PKG)/protos/model_config.proto
	rm -f $(GRPC_PKG)/model_config_pb2_grpc.py  # model_config.proto has no service
	sed -i -E 's/^import (model_config_pb2|grpc_service_pb2) as/from . import \1 as/' $(GRPC_PKG)/*_pb2*.py

clean:
	rm -rf $(VENV) artifacts .pytest_cache test-artifacts
