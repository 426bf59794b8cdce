# ML observability stack-in-a-box. `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
STAMP := $(VENV)/.installed-stamp

.DEFAULT_GOAL := help
.PHONY: help check-docker preflight lock up down clean ps logs scale test-e2e local load chaos-latency chaos-errors chaos-drift chaos-reset test lint format generate bench mutate train run-anomaly run-chatbot

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || { echo ">> creating $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo ">> installing mlobs and test tools into $(VENV)"
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[dev]'
	@touch $@

COMPOSE := docker compose

check-docker:
	@python3 docker/preflight.py --docker-only

.env: .env.example
	@python3 docker/make_env.py

preflight: ## Check Docker, Compose, free ports, vm.max_map_count and memory before `make up`
	@python3 docker/preflight.py

up: .env preflight ## Start the whole stack in Docker and wait until every service is healthy
	@echo ">> building and starting (first run: images download, Elasticsearch and Kibana take a few minutes)"
	$(COMPOSE) up --detach --build --wait --wait-timeout 900
	@echo ""
	@echo "The stack is up (credentials are in .env):"
	@echo "  Grafana        http://127.0.0.1:3000   user admin, password GRAFANA_ADMIN_PASSWORD"
	@echo "  Kibana         http://127.0.0.1:5601   user elastic, password ELASTIC_PASSWORD"
	@echo "  Prometheus     http://127.0.0.1:9090"
	@echo "  Alertmanager   http://127.0.0.1:9093"
	@echo "  alert-sink     http://127.0.0.1:8003/alerts"
	@echo "  models         http://127.0.0.1:8001 (anomaly-detector)  http://127.0.0.1:8002 (chatbot)"

down: check-docker ## Stop the stack (keeps data volumes)
	$(COMPOSE) down

clean: check-docker ## Stop the stack and delete its volumes (needed after changing a password in .env)
	$(COMPOSE) down --volumes --remove-orphans

ps: check-docker ## Status and health of every service
	$(COMPOSE) ps

logs: check-docker ## Follow the logs of every service (SERVICE=name for one)
	$(COMPOSE) logs --follow --tail 100 $(SERVICE)

MODEL ?= chatbot
N ?= 3
scale: check-docker .env ## Run N replicas of MODEL (host ports of the model servers are dropped)
	$(COMPOSE) -f docker-compose.yml -f docker/compose.scale.yml up --detach --wait --scale $(MODEL)=$(N)

test-e2e: $(STAMP) ## End-to-end tests against the Docker stack (boots it; needs Docker; `make down` first)
	$(PY) -m pytest tests/e2e -v

local: $(STAMP) ## Run the stack natively (servers, Prometheus, Alertmanager, alert-sink) until Ctrl-C
	$(PY) -m native

# Load and chaos against the running stack (make local or make up); each runs for LOAD_SECONDS.
# The fault token: $$MLOBS_ADMIN_TOKEN, else the native stack's .local/admin-token, else .env's.
LOAD_SECONDS ?= 300
ADMIN_TOKEN = $(or $(MLOBS_ADMIN_TOKEN),$(shell cat .local/admin-token 2>/dev/null),$(shell sed -n 's/^MLOBS_ADMIN_TOKEN=//p' .env 2>/dev/null))
LOADGEN = MLOBS_ADMIN_TOKEN='$(ADMIN_TOKEN)' $(PY) -m services.loadgen --duration $(LOAD_SECONDS)

load: $(STAMP) ## Steady traffic to both model servers
	@$(LOADGEN) --scenario steady --rate 10
chaos-latency: $(STAMP) ## 800 ms extra latency: ModelP99LatencyHigh fires
	@$(LOADGEN) --scenario latency --rate 5
chaos-errors: $(STAMP) ## 20 % server errors: ModelErrorRateHigh fires
	@$(LOADGEN) --scenario errors --rate 10
chaos-drift: $(STAMP) ## Inputs from a shifted distribution: ModelFeatureDriftHigh fires
	@$(LOADGEN) --scenario drift --rate 10
chaos-reset: $(STAMP) ## Clear injected faults on both servers
	@$(LOADGEN) --reset-faults

test: $(STAMP) ## Create .venv, install, lint and run every test this machine can run
	$(PY) -m ruff check .
	$(PY) -m pytest

lint: $(STAMP) ## ruff check
	$(PY) -m ruff check .

format: $(STAMP) ## ruff format and fix imports
	$(PY) -m ruff check --fix --select I .
	$(PY) -m ruff format .

# The images install docker/requirements.lock (exact versions and hashes), never pyproject.toml's
# ranges. uv resolves one lock for every platform (--universal: linux x86_64 and aarch64 alike)
# for the image's Python; existing pins stay unless UPGRADE=1 moves them to the newest allowed.
LOCK_PYTHON = $(shell sed -n 's/^PYTHON_VERSION=\([0-9]*\.[0-9]*\).*/\1/p' .env.example)
lock: $(STAMP) ## Refresh docker/requirements.lock from pyproject.toml (UPGRADE=1: newest allowed versions)
	$(PY) -m uv pip compile pyproject.toml --universal --python-version $(LOCK_PYTHON) \
		--generate-hashes $(if $(UPGRADE),--upgrade) --custom-compile-command "make lock" \
		--output-file docker/requirements.lock

generate: $(STAMP) ## Render every generated file (Prometheus, Alertmanager, Grafana, Logstash, Kibana)
	$(PY) -m mlobs.generate

# Not part of `make test` or CI: run it before calling test work done. Each run retries earlier
# survivors, then checks new mutants until the budget is spent; results are cached in mutants/.
MUTATE_MINUTES ?= 60
mutate: $(STAMP) ## Mutation testing of mlobs/ with mutmut: score and surviving mutants (MUTATE_MINUTES=60, MUTATE_CHILDREN)
	$(PY) -m mutation --minutes $(MUTATE_MINUTES) $(if $(MUTATE_CHILDREN),--children $(MUTATE_CHILDREN))

train: $(STAMP) ## Retrain both sample models and rewrite their committed artifacts
	$(PY) -m services.anomaly_detector.train
	$(PY) -m services.chatbot.train

bench: $(STAMP) ## Benchmarks: drift costs, instrumentation overhead (req/s, simulated CPU work), model-cost sweep (figures, no pass/fail)
	$(PY) -m benchmarks.drift
	$(PY) -m benchmarks.overhead
	$(PY) -m benchmarks.instructions
	$(PY) -m benchmarks.model_cost

run-anomaly: $(STAMP) ## Serve the anomaly detector on 127.0.0.1:8001
	$(PY) -m mlobs.serve services.anomaly_detector.app:app --port 8001

run-chatbot: $(STAMP) ## Serve the chatbot on 127.0.0.1:8002
	$(PY) -m mlobs.serve services.chatbot.app:app --port 8002
