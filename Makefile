# The one place commands live. `make run` and `make test` are the two commands of README.md.
PYTHON ?= python3
VENV   := .venv
UV     := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := $(VENV)/bin/uv
endif
BIN    := $(VENV)/bin

.PHONY: install run migrate test lint format typecheck check bench soak attack demo image-test clean spectral openapi

# uv is taken from PATH; without it, pip installs it into the project's environment first.
$(VENV)/bin/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv

install: $(if $(filter $(VENV)/bin/uv,$(UV)),$(VENV)/bin/uv)
	$(UV) sync --frozen --quiet

migrate: install
	$(BIN)/esis-sync migrate

run: migrate
	$(BIN)/esis-sync serve

test: install
	$(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy app fake_esis tests bench

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

check: lint typecheck test

bench: install
	$(BIN)/python -m bench.merge
	$(BIN)/python -m bench.edexml_memory

soak: install
	$(BIN)/python -m bench.soak

# Issue 13's memory cases on the real service: peak memory per request (not in CI).
attack: install
	$(BIN)/python -m bench.attack

demo: install
	$(BIN)/esis-sync demo

# The OpenAPI document as the service serves it at /openapi.json, without a server or a
# database: var/openapi.json, for client generators (docs/integrator.md) and `make spectral`.
openapi: install
	@mkdir -p var
	$(BIN)/python -c "import json; from app.config import Settings; from app.main import create_app; print(json.dumps(create_app(Settings(database_url='sqlite://')).openapi(), indent=1))" > var/openapi.json
	@echo "wrote var/openapi.json"

# Spectral's OWASP ruleset on the OpenAPI document, where Node.js is installed (not in CI):
# its packages go to var/spectral, pinned. The counts and why the rest stay: docs/api.md.
SPECTRAL_DIR := var/spectral
spectral: openapi
	@if ! command -v npx >/dev/null 2>&1; then echo "spectral: npx not found, skipped"; exit 0; fi; \
	set -e; mkdir -p $(SPECTRAL_DIR); \
	npm install --silent --no-audit --no-fund --prefix $(SPECTRAL_DIR) \
		@stoplight/spectral-cli@6.16.3 @stoplight/spectral-owasp-ruleset@2.0.1; \
	cp var/openapi.json $(SPECTRAL_DIR)/openapi.json; \
	cp .spectral.yaml $(SPECTRAL_DIR)/.spectral.yaml; \
	cd $(SPECTRAL_DIR) && npx --no-install spectral lint -r .spectral.yaml openapi.json \
		|| echo "spectral: problems remain; docs/api.md says which and why"

# Build the image and smoke-test it with `docker run` and with docker-compose.yml (needs Docker
# and the machine's PostgreSQL, ESIS_SYNC_TEST_POSTGRES_URL); see docs/operator.md.
image-test: install
	$(BIN)/python -m tests.image.smoke $(IMAGE_TEST_ARGS)

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache .hypothesis
