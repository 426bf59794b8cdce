# ML observability stack-in-a-box. `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
STAMP := $(VENV)/.installed-stamp

.DEFAULT_GOAL := help
.PHONY: help up local load chaos-latency chaos-errors chaos-drift chaos-reset test lint format generate bench train run-anomaly run-chatbot

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || { echo ">> creating $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo ">> installing mlobs and test tools into $(VENV)"
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[dev]'
	@touch $@

up: ## Start the whole stack in Docker
	@if [ ! -f docker-compose.yml ]; then \
		echo "docker-compose.yml is not there yet: the Docker stack is still being built."; \
		echo "Run the model servers natively instead: make run-anomaly / make run-chatbot."; \
		exit 1; \
	fi

local: $(STAMP) ## Run the stack natively (servers, Prometheus, Alertmanager, alert-sink) until Ctrl-C
	$(PY) -m native

# Load and chaos against the running stack (make local); each runs for LOAD_SECONDS.
LOAD_SECONDS ?= 300
TOKEN_FILE := .local/admin-token
LOADGEN = $(PY) -m services.loadgen --duration $(LOAD_SECONDS) $(if $(wildcard $(TOKEN_FILE)),--admin-token-file $(TOKEN_FILE))

load: $(STAMP) ## Steady traffic to both model servers
	$(LOADGEN) --scenario steady --rate 10
chaos-latency: $(STAMP) ## 800 ms extra latency: ModelP99LatencyHigh fires
	$(LOADGEN) --scenario latency --rate 5
chaos-errors: $(STAMP) ## 20 % server errors: ModelErrorRateHigh fires
	$(LOADGEN) --scenario errors --rate 10
chaos-drift: $(STAMP) ## Inputs from a shifted distribution: ModelFeatureDriftHigh fires
	$(LOADGEN) --scenario drift --rate 10
chaos-reset: $(STAMP) ## Clear injected faults on both servers
	$(LOADGEN) --reset-faults

test: $(STAMP) ## Create .venv, install, lint and run every test this machine can run
	$(PY) -m ruff check .
	$(PY) -m pytest

lint: $(STAMP) ## ruff check
	$(PY) -m ruff check .

format: $(STAMP) ## ruff format and fix imports
	$(PY) -m ruff check --fix --select I .
	$(PY) -m ruff format .

generate: $(STAMP) ## Render Prometheus rules, tests and configs, Alertmanager config from the spec
	$(PY) -m mlobs.generate

train: $(STAMP) ## Retrain both sample models and rewrite their committed artifacts
	$(PY) -m services.anomaly_detector.train
	$(PY) -m services.chatbot.train

bench: $(STAMP) ## Benchmarks: drift costs and instrumentation overhead (figures, no pass/fail)
	$(PY) -m benchmarks.drift
	$(PY) -m benchmarks.overhead

run-anomaly: $(STAMP) ## Serve the anomaly detector on 127.0.0.1:8001
	$(PY) -m mlobs.serve services.anomaly_detector.app:app --port 8001

run-chatbot: $(STAMP) ## Serve the chatbot on 127.0.0.1:8002
	$(PY) -m mlobs.serve services.chatbot.app:app --port 8002
