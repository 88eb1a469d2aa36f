# codellm on the embedded default: SQLite Dagster storage, SQLite MLflow, tiny model, CPU.
# Fresh machine:  make run   (sets up .venv, materializes the whole graph, starts the gateway)
#                 make test  (the test suite; .ci/run calls this)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOME_DIR := $(CURDIR)/var
export DAGSTER_HOME := $(HOME_DIR)/dagster
export HF_HUB_OFFLINE := 1
export GX_ANALYTICS_ENABLED := false
export TOKENIZERS_PARALLELISM := false
DAGSTER_PORT ?= 3000
MLFLOW_PORT ?= 5000

VLLM_VENV ?= .venv-vllm

.PHONY: install run test dev mlflow serve stop clean lint bench vllm

$(BIN)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	# torch first, pinned: the CPU wheel; an open range would pull a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test]"
	touch $@

install: $(BIN)/.installed

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml

run: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/codellm serve --detach   # first: deployed_endpoint verifies a completion through it
	$(BIN)/codellm run
	$(BIN)/codellm summary

test: install
	$(BIN)/ruff check codellm_assets codellm_assets_tests benchmarks
	$(BIN)/python -m pytest -q

dev: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -h 127.0.0.1 -p $(DAGSTER_PORT) -w workspace.yaml

mlflow: install
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(HOME_DIR)/mlflow/mlflow.db \
		--default-artifact-root $(HOME_DIR)/mlflow/artifacts -h 127.0.0.1 -p $(MLFLOW_PORT)

serve: install
	$(BIN)/codellm serve

# vLLM's CPU build in its own venv (built once; it pins its own torch/transformers), started detached on
# 127.0.0.1 with the base model and the adapters the routing table names; prints the command and its URL.
vllm: install $(DAGSTER_HOME)/dagster.yaml
	PYTHON=$(PYTHON) bash scripts/vllm-venv.sh $(VLLM_VENV)
	CODELLM__SERVING__VLLM_VENV=$(VLLM_VENV) $(BIN)/codellm vllm start

stop:
	-@$(BIN)/codellm serve --stop 2>/dev/null || true
	-@$(BIN)/codellm vllm stop 2>/dev/null || true

lint: install
	$(BIN)/ruff check codellm_assets codellm_assets_tests benchmarks

bench: install
	$(BIN)/python benchmarks/data_pipeline.py

clean: stop
	rm -rf $(HOME_DIR)
